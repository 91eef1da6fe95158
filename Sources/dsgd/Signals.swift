import Foundation
import Synchronization

/// Set by SIGINT/SIGTERM; polled by the run loops (zmq_poll returns on EINTR).
let interruptSignal = Atomic<Int32>(0)

func installInterruptHandlers() {
    let handler: @convention(c) (Int32) -> Void = { signalNumber in
        interruptSignal.store(signalNumber, ordering: .relaxed)
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)

}
