import ArgumentParser
import CZeroMQ
import Foundation
import LearningCore
import Wire
import ZeroMQTransport

/// Internal: sends random and mutated frames to a dsgd inbox (the hostile-input test).
struct FuzzPeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz-peer", abstract: "Internal: send hostile frames to an inbox.", shouldDisplay: false)

    @Option var endpoint: String
    @Option var count: Int = 10_000
    @Option var seed: UInt64 = 1

    func run() throws {
        guard let context = zmq_ctx_new() else { throw ValidationError("zmq_ctx_new failed") }
        defer { zmq_ctx_term(context) }
        guard let socket = zmq_socket(context, ZMQ_PUSH) else { throw ValidationError("zmq_socket failed") }
        var linger: Int32 = 5_000
        zmq_setsockopt(socket, ZMQ_LINGER, &linger, 4)
        guard zmq_connect(socket, endpoint) == 0 else { throw ValidationError("cannot connect to \(endpoint)") }
        defer { zmq_close(socket) }
        var generator = SplitMix64(seed: seed)
        func random(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: generator.next()) } }
        func header() -> [UInt8] {
            // A plausible header for another run (the run id is random, so never this run's).
            var h = MessageHeader(
                kind: MessageKind.allCases[Int(generator.next() % UInt64(MessageKind.allCases.count))],
                runID: generator.next() | 1, round: Int64(generator.next() % 50),
                sender: Int32(generator.next() % 12) - 2)
            h.payloadCount = UInt32(generator.next() % 64)
            return Envelope(header: h, body: random(Int(generator.next() % 40))).firstFrame
        }
        for _ in 0..<count {
            var frames: [[UInt8]]
            switch generator.next() % 7 {
            case 0: frames = [random(Int(generator.next() % 200))]
            case 1: frames = [header()]
            case 2:
                var h = header()
                for _ in 0..<(1 + generator.next() % 4) {
                    h[Int(generator.next() % UInt64(h.count))] ^= UInt8(truncatingIfNeeded: generator.next())
                }
                frames = [h, random(Int(generator.next() % 100))]
            case 3:
                // Declared length larger than the payload.
                frames = [header(), random(4 * Int(generator.next() % 8))]
            case 4:
                // NaN and Inf payloads.
                let floats: [Float] = (0..<16).map { _ in
                    [Float.nan, .infinity, -.infinity, 1][Int(generator.next() % 4)]
                }
                frames = [header(), floats.withUnsafeBytes { Array($0) }]
            case 5: frames = (0..<(1 + generator.next() % 5)).map { _ in random(Int(generator.next() % 64)) }
            default: frames = [Array(header().prefix(Int(generator.next() % 32)))]  // truncated
            }
            for (index, frame) in frames.enumerated() {
                _ = frame.withUnsafeBytes {
                    zmq_send(socket, $0.baseAddress, $0.count, index + 1 < frames.count ? ZMQ_SNDMORE : 0)
                }
            }
        }
    }
}
