import Foundation
import Synchronization
import Transport

/// Sends a process's heartbeats from a thread of its own, over a transport of its own, so that a
/// long computation on the main loop (a large model's evaluation, many local steps) does not make
/// the process look dead to its peers. Heartbeats then say "this process is alive"; a stalled
/// main loop is still caught by the peer timeout.
public final class HeartbeatSender: @unchecked Sendable {
    private struct State {
        var beat: Envelope?
        var peers: [Peer: String] = [:]
        var connected: Set<Peer> = []
        var stopped = false
        var intervalSeconds: Double
    }

    private let state: Mutex<State>
    private let transport: any Transport
    private let done = DispatchSemaphore(value: 0)
    /// Signalled by `stop`, so the thread does not sleep out its interval first (a process of 128
    /// workers stopped its 128 senders one after another: that took over 30 s).
    private let wake = DispatchSemaphore(value: 0)

    /// - Parameter transport: used by the sending thread only.
    public init(transport: any Transport, intervalSeconds: Double = 0.5) {
        self.transport = transport
        state = Mutex(State(intervalSeconds: intervalSeconds))
        let thread = Thread { [self] in self.loop() }
        thread.name = "dsgd-heartbeat"
        thread.start()
    }

    /// What to send from now on, to whom (peers with their endpoints), and how often.
    public func update(beat: Envelope, peers: [Peer: String], intervalSeconds: Double) {
        state.withLock {
            $0.beat = beat
            $0.peers = peers
            $0.intervalSeconds = intervalSeconds
        }
    }

    /// Stops the thread and waits for it.
    public func stop() {
        state.withLock { $0.stopped = true }
        wake.signal()
        done.wait()
    }

    private func loop() {
        while true {
            _ = wake.wait(timeout: .now() + state.withLock { $0.intervalSeconds })
            let (beat, peers, connected, stopped) = state.withLock { ($0.beat, $0.peers, $0.connected, $0.stopped) }
            if stopped { break }
            guard let beat else { continue }
            var newlyConnected: [Peer] = []
            for (peer, endpoint) in peers {
                if !connected.contains(peer) {
                    guard (try? transport.connect(peer, endpoint: endpoint)) != nil else { continue }
                    newlyConnected.append(peer)
                }
                // Heartbeats are sent without waiting (best effort), as the main transport does.
                try? transport.send(beat, to: peer)
            }
            if !newlyConnected.isEmpty { state.withLock { $0.connected.formUnion(newlyConnected) } }
        }
        done.signal()
    }
}
