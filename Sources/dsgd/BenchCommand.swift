import ArgumentParser

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Measure throughput (see README).")
    func run() throws {}
}

struct BenchPeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-peer", abstract: "Internal: the far end of bench's transfer test.", shouldDisplay: false)
    func run() throws {}
}
