import ArgumentParser
import Foundation

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
