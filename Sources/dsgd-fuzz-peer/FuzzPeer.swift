import ArgumentParser
import Foundation
import LearningCore
import Wire
import ZeroMQTransport

/// A test tool, apart from the user's binary: sends random and mutated frames to a dsgd inbox
/// (the hostile-input test, `Tests/EndToEndTests/HostileInputTests.swift`).
@main
struct FuzzPeer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dsgd-fuzz-peer", abstract: "Send hostile frames to a dsgd inbox (for the hostile-input test).")

    @Option var endpoint: String
    @Option var count: Int = 10_000
    @Option var seed: UInt64 = 1
    @Option(help: "Fuzz with well-formed headers of this live run (hexadecimal run id).") var liveRunId: String?
    @Option(help: "With --live-run-id: the run's model size in floats.") var modelSize: Int = 0
    @Option(help: "With --live-run-id: the run's workers and rounds.") var workers: Int = 0
    @Option var rounds: Int = 0
    @Option(help: "With --live-run-id: worker (a worker's inbox, whose rank is --rank) or coordinator.")
    var target: String = "worker"
    @Option var rank: Int = 0

    func run() throws {
        // A target that stops reading (its run ended, or it is wedged) must not block this process
        // forever; 30 s, not less: on two busy cores a live target can fall that far behind.
        let socket: RawFramePusher
        do { socket = try RawFramePusher(endpoint: endpoint, sendTimeoutMilliseconds: 30_000) } catch {
            throw ValidationError("\(error)")
        }
        var generator = SplitMix64(seed: seed)
        func random(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: generator.next()) } }
        if let liveRunId {
            guard let runID = UInt64(liveRunId, radix: 16), modelSize > 0, workers > 0, rounds > 0 else {
                throw ValidationError("--live-run-id needs a hexadecimal run id, --model-size, --workers and --rounds")
            }
            let live = LiveRunFuzzer(
                runID: runID, modelSize: modelSize, workers: workers, rounds: rounds,
                targetIsWorker: target == "worker",
                rank: rank)
            for sent in 0..<count {
                guard socket.send(live.frames(&generator)) else {
                    throw ValidationError("the target stopped reading after \(sent) of \(count) frames")
                }
            }
            print("sent \(count) live-run frames")
            return
        }
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
            socket.send(frames)
        }
    }
}

/// Frames with the live run's version and run id whose mutations a node can tell from legitimate
/// messages: kinds the target never accepts, senders that are not live peers (itself, out of
/// range), rounds outside the run, payloads of the wrong size or encoding, malformed sparse
/// payloads, NaN/Inf models, bodies that do not decode. What a node cannot tell apart without
/// CurveZMQ keys (a well-formed model from a live peer for a live round, a well-formed abort,
/// acknowledgement, report or summary of the live run) is left out: see the README's security
/// section.
struct LiveRunFuzzer {
    let runID: UInt64
    let modelSize: Int
    let workers: Int
    let rounds: Int
    let targetIsWorker: Bool
    let rank: Int

    func frames(_ generator: inout SplitMix64) -> [[UInt8]] {
        func random(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: generator.next()) } }
        func pick<T>(_ values: [T]) -> T { values[Int(generator.next() % UInt64(values.count))] }
        func header(_ kind: MessageKind, round: Int64, sender: Int32, body: [UInt8] = []) -> Envelope {
            Envelope(header: MessageHeader(kind: kind, runID: runID, round: round, sender: sender), body: body)
        }
        func floats(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }
        let badSenders: [Int32] =
            targetIsWorker ? [Int32(rank), -1, -7, Int32(workers), 1_000] : [-2, Int32(workers), 999]
        let badRounds: [Int64] = [-1, Int64(rounds), Int64(rounds) + 5, .max, .min]
        let liveSender = Int32(pick(Array(0..<workers).filter { !targetIsWorker || $0 != rank }))
        let liveRound = Int64(generator.next() % UInt64(rounds))
        var envelope: Envelope
        var payload: [[UInt8]] = []
        switch generator.next() % 9 {
        case 0:
            // A kind the target never accepts.
            let kinds: [MessageKind] =
                targetIsWorker
                ? [.register, .ready, .metrics, .finished, .clientEvaluation]
                : [.assignment, .start, .parameters, .acknowledge, .membership, .globalModel]
            envelope = header(
                pick(kinds), round: liveRound, sender: liveSender, body: random(Int(generator.next() % 40)))
        case 1:
            // A model (or report) from a sender that is not a live peer.
            envelope = header(targetIsWorker ? .parameters : .metrics, round: liveRound, sender: pick(badSenders))
            envelope.header.payloadCount = UInt32(modelSize)
            payload = [floats([Float](repeating: 0.25, count: modelSize))]
        case 2:
            // A round outside the run.
            envelope = header(targetIsWorker ? .parameters : .metrics, round: pick(badRounds), sender: liveSender)
            envelope.header.payloadCount = UInt32(modelSize)
            payload = [floats([Float](repeating: 0.25, count: modelSize))]
        case 3:
            // The wrong size, dense.
            let size = pick([1, modelSize - 1, modelSize + 1, 2 * modelSize])
            envelope = header(targetIsWorker ? .parameters : .metrics, round: liveRound, sender: liveSender)
            envelope.header.payloadCount = UInt32(size)
            payload = [floats([Float](repeating: 0.5, count: size))]
        case 4:
            // Sparse with a dense length that is not the model's, or indices out of order.
            var slots: [UInt32] = [UInt32(pick([modelSize + 1, Int(UInt32.max), 3]))]
            slots += [5, 2, Float(1).bitPattern, Float(2).bitPattern]
            if generator.next() & 1 == 0 { slots[0] = UInt32(modelSize) }  // right length, indices out of order
            envelope = header(targetIsWorker ? .parameters : .metrics, round: liveRound, sender: liveSender)
            envelope.header.payloadCount = UInt32(slots.count)
            envelope.header.payloadEncoding = .sparse
            payload = [slots.withUnsafeBytes { Array($0) }]
        case 5 where targetIsWorker:
            // A model of the right size with NaN or Inf in it, from a live peer for a live round.
            var values = [Float](repeating: 0.1, count: modelSize)
            values[Int(generator.next() % UInt64(modelSize))] = pick([.nan, .infinity, -.infinity])
            envelope = header(.parameters, round: liveRound, sender: liveSender)
            envelope.header.payloadCount = UInt32(modelSize)
            payload = [floats(values)]
        case 6:
            // Bodies that do not decode, on kinds that carry JSON.
            let kinds: [MessageKind] = targetIsWorker ? [.membership, .assignment] : [.metrics, .finished, .register]
            envelope = header(
                pick(kinds), round: liveRound, sender: liveSender, body: random(1 + Int(generator.next() % 60)))
        case 7:
            // Declared sizes the frames do not hold.
            envelope = header(targetIsWorker ? .parameters : .metrics, round: liveRound, sender: liveSender)
            envelope.header.payloadCount = UInt32(modelSize)
            payload = [random(4 * Int(generator.next() % 64))]
        default:
            // A truncated or bit-flipped header of the live run.
            var first = header(.parameters, round: liveRound, sender: liveSender).firstFrame
            if generator.next() & 1 == 0 {
                first = Array(first.prefix(Int(generator.next() % UInt64(MessageHeader.byteCount))))
            } else {
                // Flip a bit in the version or kind field (bytes 4-7): another version, or no kind.
                first[4 + Int(generator.next() % 4)] ^= 0x80
            }
            return [first]
        }
        return [envelope.firstFrame] + payload
    }
}
