import Foundation
import Runtime
import Transport
import XCTest

/// Stopping a heartbeat sender does not wait out its interval: a process of K workers stops K
/// senders as it exits, and with each waiting up to one interval a 128-worker process took over
/// 30 s to exit after its run had completed.
final class HeartbeatSenderTests: XCTestCase {
    func testStop_DoesNotWaitOutTheInterval() {
        let hub = InMemoryHub()
        let senders = (0..<8).map { index in
            HeartbeatSender(transport: hub.makeTransport(name: "beats-\(index)"), intervalSeconds: 60)
        }
        let started = Date()
        for sender in senders { sender.stop() }
        // Eight senders with a 60 s interval: waiting out one interval would take a minute.
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
    }
}
