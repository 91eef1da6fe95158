import Foundation
import Synchronization
import Transport

/// Set by SIGINT/SIGTERM; polled by the run loops (zmq_poll returns on EINTR).
let interruptSignal = Atomic<Int32>(0)

func installInterruptHandlers() {
    let handler: @convention(c) (Int32) -> Void = { signalNumber in
        interruptSignal.store(signalNumber, ordering: .relaxed)
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)

}

/// With DSGD_MESSAGE_TALLY=DIR, a process writes its messages by kind (`MessageTally`) to
/// DIR/<role>-<pid>.json as it exits, so a harness can account for every message of a run.
func writeMessageTally(_ tally: MessageTally, role: String) {
    guard let folder = ProcessInfo.processInfo.environment["DSGD_MESSAGE_TALLY"], !folder.isEmpty else { return }
    let url = URL(fileURLWithPath: folder).appendingPathComponent("\(role)-\(getpid()).json")
    do {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        try encoder.encode(tally).write(to: url, options: .atomic)
    } catch {
        logLine("\(role): cannot write the message tally to \(url.path): \(error)")
    }
}
