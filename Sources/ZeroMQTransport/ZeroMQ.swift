import CZeroMQ
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// A libzmq error with the failing call and zmq_strerror text.
public struct ZeroMQError: Error, CustomStringConvertible {
    public var call: String
    public var code: Int32
    public var description: String { "\(call): \(String(cString: zmq_strerror(code))) (errno \(code))" }
    static func last(_ call: String) -> ZeroMQError { ZeroMQError(call: call, code: zmq_errno()) }
}

/// libzmq contexts are documented thread-safe: an honest @unchecked Sendable.
public final class ZeroMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// - Parameter maximumSockets: libzmq's limit on the sockets of the context (ZMQ_MAX_SOCKETS,
    ///   1,023 by default): a coordinator of n workers holds about 2n, a process of k workers about
    ///   6k. The process's open-file limit is raised to its hard limit as well (each socket holds
    ///   descriptors).
    public init(maximumSockets: Int = 1_023) throws {
        guard let handle = zmq_ctx_new() else { throw ZeroMQError.last("zmq_ctx_new") }
        self.handle = handle
        if maximumSockets > 1_023 {
            var limits = rlimit()
            if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limits) == 0, limits.rlim_cur < limits.rlim_max {
                limits.rlim_cur = limits.rlim_max
                _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limits)
            }
            guard zmq_ctx_set(handle, ZMQ_MAX_SOCKETS, Int32(clamping: maximumSockets)) == 0 else {
                zmq_ctx_term(handle)
                throw ZeroMQError.last("zmq_ctx_set(ZMQ_MAX_SOCKETS, \(maximumSockets))")
            }
        }
    }

    deinit { zmq_ctx_term(handle) }
}

/// A socket. Not thread-safe, deliberately not Sendable: create and use it on one thread.
final class ZeroMQSocket {
    let handle: UnsafeMutableRawPointer
    private let context: ZeroMQContext

    init(context: ZeroMQContext, type: Int32, lingerMilliseconds: Int32) throws {
        guard let handle = zmq_socket(context.handle, type) else { throw ZeroMQError.last("zmq_socket") }
        self.handle = handle
        self.context = context
        try setOption(ZMQ_LINGER, lingerMilliseconds)
    }

    deinit { zmq_close(handle) }

    func setOption(_ option: Int32, _ value: Int32) throws {
        var value = value
        guard zmq_setsockopt(handle, option, &value, MemoryLayout<Int32>.size) == 0 else {
            throw ZeroMQError.last("zmq_setsockopt(\(option))")
        }
    }

    func bind(_ endpoint: String) throws -> String {
        guard zmq_bind(handle, endpoint) == 0 else { throw ZeroMQError.last("zmq_bind(\(endpoint))") }
        var buffer = [CChar](repeating: 0, count: 1024)
        var length = buffer.count
        guard zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &length) == 0 else {
            throw ZeroMQError.last("zmq_getsockopt(ZMQ_LAST_ENDPOINT)")
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func connect(_ endpoint: String) throws {
        guard zmq_connect(handle, endpoint) == 0 else { throw ZeroMQError.last("zmq_connect(\(endpoint))") }
    }

    /// Waits up to `timeoutMilliseconds` for input (−1: forever).
    func pollIn(timeoutMilliseconds: Int) throws -> Bool {
        var item = zmq_pollitem_t(socket: handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        let result = zmq_poll(&item, 1, timeoutMilliseconds)
        if result < 0 {
            if zmq_errno() == EINTR { return false }
            throw ZeroMQError.last("zmq_poll")
        }
        return result > 0
    }
}

/// A received frame at a stable heap address; its bytes are reachable only inside closures or
/// through an owner that keeps this object alive (Swift lifetimes are not lexical).
final class ZeroMQMessage: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<zmq_msg_t>

    init() {
        pointer = .allocate(capacity: 1)
        zmq_msg_init(pointer)
    }

    deinit {
        zmq_msg_close(pointer)
        pointer.deallocate()
    }

    var count: Int { zmq_msg_size(pointer) }
    var data: UnsafeMutableRawPointer? { zmq_msg_data(pointer) }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(UnsafeRawBufferPointer(start: zmq_msg_data(pointer), count: count)) }
    }
}

typealias ZeroMQFreeFunction = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void

/// Runs on libzmq's I/O thread when a zero-copy frame has been sent: drops the payload reference
/// that the frame held.
let releasePayloadReference: ZeroMQFreeFunction = { _, hint in
    guard let hint else { return }
    Unmanaged<FloatPayload>.fromOpaque(hint).release()
}
