import CZeroMQ

/// A bare ZeroMQ PUSH socket that sends whatever frames it is given, unchecked: for the
/// hostile-input tests' fuzz peer, which must be able to send what no `Transport` would. Keeps
/// libzmq inside this target.
public final class RawFramePusher {
    private let context: UnsafeMutableRawPointer
    private let socket: UnsafeMutableRawPointer

    /// Connects to `endpoint`. `sendTimeoutMilliseconds` bounds a send to a target that stopped
    /// reading; the linger lets queued frames out at close.
    public init(endpoint: String, sendTimeoutMilliseconds: Int32, lingerMilliseconds: Int32 = 5_000)
        throws(TransportSetupError)
    {
        guard let context = zmq_ctx_new() else { throw TransportSetupError("zmq_ctx_new failed") }
        guard let socket = zmq_socket(context, ZMQ_PUSH) else {
            zmq_ctx_term(context)
            throw TransportSetupError("zmq_socket failed")
        }
        var linger = lingerMilliseconds
        zmq_setsockopt(socket, ZMQ_LINGER, &linger, 4)
        var timeout = sendTimeoutMilliseconds
        zmq_setsockopt(socket, ZMQ_SNDTIMEO, &timeout, 4)
        guard zmq_connect(socket, endpoint) == 0 else {
            zmq_close(socket)
            zmq_ctx_term(context)
            throw TransportSetupError("cannot connect to \(endpoint)")
        }
        self.context = context
        self.socket = socket
    }

    /// Sends `frames` as one multipart message; false when a frame could not be sent in time.
    @discardableResult
    public func send(_ frames: [[UInt8]]) -> Bool {
        for (index, frame) in frames.enumerated() {
            let result = frame.withUnsafeBytes {
                zmq_send(socket, $0.baseAddress, $0.count, index + 1 < frames.count ? ZMQ_SNDMORE : 0)
            }
            if result < 0 { return false }
        }
        return true
    }

    deinit {
        zmq_close(socket)
        zmq_ctx_term(context)
    }
}

/// Why a raw socket could not be set up.
public struct TransportSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
