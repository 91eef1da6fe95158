import ArgumentParser
import Foundation

@main
struct DSGD: ParsableCommand {
    /// Before anything runs: a closed stdout/stderr pipe must not kill a process (writes then
    /// fail with EPIPE, and log writes ignore that).
    static func main() {
        signal(SIGPIPE, SIG_IGN)
        Self.main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "dsgd",
        abstract: "A decentralized-SGD simulator whose workers are real processes talking ZeroMQ.",
        subcommands: [
            CoordinatorCommand.self, WorkerCommand.self, SimulateCommand.self, SweepCommand.self, TopologyCommand.self,
            ReportCommand.self,
            KeysCommand.self, BenchCommand.self,
            BenchPeerCommand.self,
        ])
}
