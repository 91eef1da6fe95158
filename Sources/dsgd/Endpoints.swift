import ArgumentParser
import Foundation
import SharedMemory
import Transport
import ZeroMQTransport

/// Binding safety and reachable endpoints: dsgd listens on loopback unless told otherwise.
enum Endpoints {
    /// Rejects a TCP bind to anything but loopback unless `allowRemote` (`--allow-remote`).
    static func checkBind(_ endpoint: String, allowRemote: Bool, flag: String) throws {
        guard endpoint.hasPrefix("tcp://") else { return }
        let host = endpoint.dropFirst("tcp://".count).split(separator: ":").dropLast().joined(separator: ":")
        let loopback = host.hasPrefix("127.") || host == "localhost" || host == "[::1]"
        if !loopback && !allowRemote {
            throw ValidationError(
                "\(flag) \(endpoint) would accept connections from other hosts; pass --allow-remote to do that on purpose (and see --curve-keys)"
            )
        }
    }

    /// The endpoint peers should use: a wildcard host is replaced by `advertiseHost` (or this
    /// machine's host name).
    static func advertised(_ bound: String, advertiseHost: String?) -> String {
        guard bound.hasPrefix("tcp://0.0.0.0:") || bound.hasPrefix("tcp://*:") || advertiseHost != nil else {
            return bound
        }
        let port = bound.split(separator: ":").last.map(String.init) ?? ""
        return "tcp://\(advertiseHost ?? ProcessInfo.processInfo.hostName):\(port)"
    }

    /// A rank given by the launcher: Open MPI's or Slurm's environment (minus `offset`, for a
    /// launch where rank 0 is the coordinator).
    static func launcherRank(offset: Int) -> Int? {
        let environment = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"] {
            if let value = environment[key].flatMap(Int.init) { return value - offset }
        }
        return nil
    }
}

/// The network flags of every process: where to listen, whether other hosts may connect, what to
/// advertise, and the CurveZMQ keys.
struct NetworkOptions: ParsableArguments {
    @Option(help: "Inbox endpoint to bind (tcp://127.0.0.1:* picks a free port).")
    var bind: String = "tcp://127.0.0.1:*"

    @Flag(help: "Allow binding to addresses other than loopback (other hosts can then connect).")
    var allowRemote = false

    @Option(help: "Encrypt and authenticate every connection with the CurveZMQ keys in DIR (dsgd keys generate DIR).")
    var curveKeys: String?

    @Option(help: "Host name or address to advertise when bound to a wildcard address.")
    var advertiseHost: String?

    @Option(
        help: ArgumentHelp(
            "How models travel between processes: auto, shared-memory or zeromq.",
            discussion:
                "auto (the default): through shared memory (/dev/shm) when every process of the run is on one host, as ZeroMQ frames otherwise; the coordinator decides once every worker registered and records it in config.json. shared-memory: fail before the first round when that is impossible. A worker started with zeromq keeps the run on ZeroMQ frames."
        ))
    var payloads: PayloadMode = .auto

    /// What this process reports of its host's shared memory.
    func sharedMemoryReport() -> SharedMemoryReport {
        if payloads == .zeromq {
            return SharedMemoryReport(domain: nil, availableBytes: 0, problem: "started with --payloads zeromq")
        }
        let found = SharedMemoryHost.probe()
        return SharedMemoryReport(domain: found.domain, availableBytes: found.availableBytes, problem: found.problem)
    }

    func checkBind() throws { try Endpoints.checkBind(bind, allowRemote: allowRemote, flag: "--bind") }

    /// The inbox, with CURVE and its ZAP handler when keys are given, and a second transport
    /// (same keys, an unused loopback inbox) for the heartbeat thread.
    func makeTransports(context: ZeroMQContext, role: String) throws -> (
        main: ZeroMQTransport, heartbeat: ZeroMQTransport
    ) {
        let security = try curveSecurity(curveKeys, context: context, role: role)
        return (
            try ZeroMQTransport(context: context, bindEndpoint: bind, curve: security?.0),
            // Heartbeats are best effort: none is worth waiting for at exit (a beat queued for a
            // peer that has already gone would otherwise hold the process for the linger period).
            try ZeroMQTransport(
                context: context, bindEndpoint: "tcp://127.0.0.1:*", lingerMilliseconds: 0, curve: security?.0)
        )
    }

    func advertised(_ transport: ZeroMQTransport) -> String {
        Endpoints.advertised(transport.localEndpoint, advertiseHost: advertiseHost)
    }
}

extension PayloadMode: ExpressibleByArgument {}
