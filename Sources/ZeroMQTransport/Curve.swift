import CZeroMQ
import Foundation

/// CurveZMQ keys of a cluster (Z85 text, 40 characters each), read from a `--curve-keys` folder
/// written by `dsgd keys generate`: every inbox is a CURVE server with the cluster's server key;
/// every connection is a CURVE client with a client key that the receiving side's ZAP handler
/// must find in `authorized_clients`. Traffic is encrypted and authenticated; a peer without an
/// authorised client key is refused, and the refusal is logged.
public struct CurveKeys: Sendable {
    public var serverPublic: String
    public var serverSecret: String
    public var clientPublic: String
    public var clientSecret: String
    public var authorizedClients: Set<String>

    static let files = ["server.pub", "server.key", "client.pub", "client.key", "authorized_clients"]

    /// A fresh key pair (public, secret).
    public static func keyPair() throws -> (public: String, secret: String) {
        var publicKey = [CChar](repeating: 0, count: 41)
        var secretKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicKey, &secretKey) == 0 else { throw ZeroMQError.last("zmq_curve_keypair") }
        return (text(publicKey), text(secretKey))
    }

    /// Writes a new set of keys into `directory`. Every file is created with its final mode (0600
    /// for secret keys, 0644 for the rest) as a temporary file opened `O_EXCL`, written, fsynced
    /// and renamed into place, so a secret key is never readable by others, not even for a moment.
    public static func generate(in directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let server = try keyPair()
        let client = try keyPair()
        let contents = [server.public, server.secret, client.public, client.secret, client.public]
        for (name, text) in zip(files, contents) {
            let url = directory.appendingPathComponent(name)
            try writeFile(url, contents: Array((text + "\n").utf8), mode: name.hasSuffix(".key") ? 0o600 : 0o644)
        }
    }

    private static func writeFile(_ url: URL, contents: [UInt8], mode: mode_t) throws {
        let temporary = url.path + ".tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            throw CurveError("\(temporary): cannot create: \(String(cString: strerror(errno)))")
        }
        var written = 0
        while written < contents.count {
            let result = contents.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
            guard result > 0 else {
                let reason = String(cString: strerror(errno))
                close(descriptor)
                unlink(temporary)
                throw CurveError("\(temporary): cannot write: \(reason)")
            }
            written += result
        }
        // The umask may have narrowed the mode at creation; set exactly what was asked for.
        guard fchmod(descriptor, mode) == 0, fsync(descriptor) == 0, close(descriptor) == 0 else {
            unlink(temporary)
            throw CurveError("\(temporary): cannot finish: \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, url.path) == 0 else {
            unlink(temporary)
            throw CurveError("\(url.path): cannot replace: \(String(cString: strerror(errno)))")
        }
    }

    /// Reads a key folder, checking every file; a secret key file that its group or others may
    /// read or write is refused, as ssh refuses such a private key.
    public static func load(from directory: URL) throws -> CurveKeys {
        func read(_ name: String) throws -> [String] {
            let url = directory.appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: url.path) else {
                throw CurveError("\(url.path): missing (create the folder with 'dsgd keys generate \(directory.path)')")
            }
            if name.hasSuffix(".key") {
                var status = stat()
                guard stat(url.path, &status) == 0 else { throw CurveError("\(url.path): cannot stat") }
                let mode = status.st_mode & 0o777
                guard mode & 0o077 == 0 else {
                    throw CurveError(
                        "\(url.path): a secret key readable or writable by its group or others (mode \(String(mode, radix: 8))); run 'chmod 600 \(url.path)'"
                    )
                }
            }
            let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map {
                $0.trimmingCharacters(in: .whitespaces)
            }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
            for (index, line) in lines.enumerated() where line.utf8.count != 40 {
                throw CurveError("\(url.path):\(index + 1): not a 40-character Z85 CURVE key")
            }
            return lines
        }
        func single(_ name: String) throws -> String {
            let lines = try read(name)
            guard lines.count == 1 else {
                throw CurveError("\(directory.appendingPathComponent(name).path): expected one key")
            }
            return lines[0]
        }
        return CurveKeys(
            serverPublic: try single("server.pub"), serverSecret: try single("server.key"),
            clientPublic: try single("client.pub"),
            clientSecret: try single("client.key"), authorizedClients: Set(try read("authorized_clients")))
    }
}

public struct CurveError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

extension ZeroMQSocket {
    func setOption(_ option: Int32, _ text: String) throws {
        let bytes = Array(text.utf8)
        guard zmq_setsockopt(handle, option, bytes, bytes.count) == 0 else {
            throw ZeroMQError.last("zmq_setsockopt(\(option))")
        }
    }

    func makeCurveServer(_ keys: CurveKeys) throws {
        try setOption(ZMQ_CURVE_SERVER, Int32(1))
        try setOption(ZMQ_CURVE_SECRETKEY, keys.serverSecret)
        try setOption(ZMQ_ZAP_DOMAIN, "dsgd")
        // Where libzmq has the (draft) option, also refuse connections when no handler answers;
        // elsewhere the handler's fail-closed exit is what guarantees it.
        var enforce: Int32 = 1
        _ = zmq_setsockopt(handle, 93 /* ZMQ_ZAP_ENFORCE_DOMAIN */, &enforce, 4)
    }

    func makeCurveClient(_ keys: CurveKeys) throws {
        try setOption(ZMQ_CURVE_SERVERKEY, keys.serverPublic)
        try setOption(ZMQ_CURVE_PUBLICKEY, keys.clientPublic)
        try setOption(ZMQ_CURVE_SECRETKEY, keys.clientSecret)
    }
}

/// The ZAP handler (RFC 27): a thread answering libzmq's authentication requests for every CURVE
/// server socket of a context, accepting only authorised client keys and logging refusals.
public final class ZAPAuthenticator: @unchecked Sendable {
    private let context: ZeroMQContext
    private let ready = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    /// The handler thread (for tests that interrupt it with a signal).
    var thread: pthread_t? { startFailure.thread }
    private let startFailure = StartFailure()

    /// Starts the handler; it runs until the context is shut down. It fails closed: if it cannot
    /// start, this throws (the process must not run without it, since libzmq admits every client
    /// of a CURVE server when no handler answers); if its thread ever stops for any reason but
    /// the context's shutdown, the process exits at once with the reason. Interrupted receives
    /// (EINTR) are retried.
    public init(context: ZeroMQContext, authorized: Set<String>, log: @escaping @Sendable (String) -> Void) throws {
        self.context = context
        let handle = UnsafeSendableHandle(context.handle)
        let ready = self.ready
        let finished = self.finished
        let startFailure = self.startFailure
        let thread = Thread {
            defer { finished.signal() }
            startFailure.thread = pthread_self()
            guard let socket = zmq_socket(handle.pointer, ZMQ_REP) else {
                startFailure.reason = "zmq_socket: \(String(cString: zmq_strerror(zmq_errno())))"
                ready.signal()
                return
            }
            var linger: Int32 = 0
            zmq_setsockopt(socket, ZMQ_LINGER, &linger, 4)
            let bound = zmq_bind(socket, "inproc://zeromq.zap.01")
            if bound != 0 {
                startFailure.reason =
                    "cannot bind inproc://zeromq.zap.01: \(String(cString: zmq_strerror(zmq_errno()))) (another handler in this context?)"
            }
            ready.signal()
            guard bound == 0 else {
                zmq_close(socket)
                return
            }
            while true {
                var frames: [[UInt8]] = []
                var more: Int32 = 1
                while more != 0 {
                    var message = zmq_msg_t()
                    zmq_msg_init(&message)
                    if zmq_msg_recv(&message, socket, 0) < 0 {
                        let code = zmq_errno()
                        zmq_msg_close(&message)
                        if code == EINTR { continue }
                        zmq_close(socket)
                        if code == ETERM { return }  // the context is shutting down
                        let reason =
                            "security: the ZAP handler stopped (\(String(cString: zmq_strerror(code)))); exiting rather than admitting unauthenticated clients"
                        log(reason)
                        try? FileHandle.standardError.write(contentsOf: Data((reason + "\n").utf8))
                        exit(70)
                    }
                    let size = zmq_msg_size(&message)
                    let data = zmq_msg_data(&message)!
                    frames.append(Array(UnsafeRawBufferPointer(start: data, count: size)))
                    more = zmq_msg_more(&message)
                    zmq_msg_close(&message)
                }
                guard frames.count >= 7 else { continue }
                let requestID = frames[1]
                let address = String(decoding: frames[3], as: UTF8.self)
                let mechanism = String(decoding: frames[5], as: UTF8.self)
                var key = [CChar](repeating: 0, count: 41)
                var accepted = false
                var encoded = ""
                if mechanism == "CURVE", frames[6].count == 32 {
                    _ = frames[6].withUnsafeBufferPointer { zmq_z85_encode(&key, $0.baseAddress, 32) }
                    encoded = text(key)
                    accepted = authorized.contains(encoded)
                }
                if !accepted {
                    log(
                        "refused a \(mechanism) connection from \(address) with unauthorised client key \(encoded.isEmpty ? "(none)" : encoded)"
                    )
                }
                let reply: [[UInt8]] = [
                    Array("1.0".utf8), requestID, Array((accepted ? "200" : "400").utf8),
                    Array((accepted ? "OK" : "unauthorised client key").utf8), Array((accepted ? "dsgd" : "").utf8), [],
                ]
                for (index, frame) in reply.enumerated() {
                    _ = frame.withUnsafeBytes {
                        zmq_send(socket, $0.baseAddress, $0.count, index + 1 < reply.count ? ZMQ_SNDMORE : 0)
                    }
                }
            }
        }
        thread.name = "zap"
        thread.start()
        ready.wait()
        if let reason = startFailure.reason { throw CurveError("the ZAP handler could not start: \(reason)") }
    }
}

/// Set by the ZAP thread before it signals `ready`, read after the wait.
private final class StartFailure: @unchecked Sendable {
    var reason: String?
    var thread: pthread_t?
}

/// A context pointer that is documented thread-safe, carried into the ZAP thread.
struct UnsafeSendableHandle: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}

/// The text of a NUL-terminated C buffer.
func text(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
