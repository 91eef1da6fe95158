import ArgumentParser

@main
struct DSGD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dsgd",
        abstract: "A decentralized-SGD simulator whose workers are real processes talking ZeroMQ.",
        subcommands: [
            CoordinatorCommand.self, WorkerCommand.self, SimulateCommand.self, TopologyCommand.self, ReportCommand.self,
            KeysCommand.self, BenchCommand.self, FuzzPeerCommand.self,
            BenchPeerCommand.self,
        ])
}
