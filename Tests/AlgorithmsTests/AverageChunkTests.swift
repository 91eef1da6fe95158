import Algorithms
import LearningCore
import XCTest

/// C-SGD's combination from the all-reduce's chunks, read where they are, against the
/// whole-vector form it replaces: the same bits whatever the chunks' bounds (odd lengths, a chunk
/// across the mixing's block boundary), since its weights ±1 make every product exact.
final class AverageChunkTests: XCTestCase {
    private func values(_ count: Int, seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in Float(Double(generator.next() % 2_000_001) / 1e6 - 1) * 3.7 }
    }

    func testCombineThenAdapt_FromChunks_EqualsTheWholeVectorForm_BitForBit() {
        let count = 20_000
        let trained = values(count, seed: 1)
        let sent = values(count, seed: 2)
        let average = values(count, seed: 3)
        for bounds in [[0, count], [0, 5, 8_197, 8_200, count], [0, 1, 2, 3, 19_999, count]] {
            var whole = trained
            sent.withUnsafeBufferPointer { s in
                average.withUnsafeBufferPointer { a in
                    Gossip.combineThenAdapt(
                        &whole, sent: s, selfWeight: 0, neighbors: [Gossip.Term(weight: 1, values: a)])
                }
            }
            var chunked = trained
            sent.withUnsafeBufferPointer { s in
                average.withUnsafeBufferPointer { a in
                    let chunks = zip(bounds, bounds.dropFirst()).map { lower, upper in
                        AverageChunk(range: lower..<upper, values: UnsafeBufferPointer(rebasing: a[lower..<upper]))
                    }
                    Gossip.combineThenAdapt(&chunked, sent: s, average: chunks)
                }
            }
            XCTAssertEqual(chunked.map(\.bitPattern), whole.map(\.bitPattern), "bounds \(bounds)")
            // And it is trained − sent + x̄, each value rounded twice in that order.
            for i in stride(from: 0, to: count, by: 997) {
                XCTAssertEqual(chunked[i].bitPattern, ((trained[i] - sent[i]) + average[i]).bitPattern)
            }
        }
    }
}
