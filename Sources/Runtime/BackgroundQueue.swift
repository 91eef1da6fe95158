import Foundation
import Synchronization

/// Jobs run in order on a thread of their own, so the coordinator keeps receiving and recording
/// rounds while they work (x̄'s evaluation, the curvature measurements); outputs are collected
/// with `drain()`. At most `maximumPendingJobs` are queued or running: `submit` waits for a free
/// place beyond that, so jobs slower than the rounds slow the run (flow control then holds the
/// workers) instead of growing memory without bound.
public final class BackgroundQueue<Job: Sendable, Output: Sendable>: @unchecked Sendable {
    private struct State {
        var queue: [Job] = []
        var finished: [Output] = []
        var running = false
        var closed = false
    }

    private let state = Mutex(State())
    private let signal = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private let places: DispatchSemaphore

    /// - Parameter makeWork: called once, on the queue's thread: returns what turns a job into
    ///   its outputs (so per-thread scratch memory is made where it is used).
    public init(name: String, maximumPendingJobs: Int, makeWork: @escaping @Sendable () -> (Job) -> [Output]) {
        places = DispatchSemaphore(value: maximumPendingJobs)
        let thread = Thread { [self] in self.loop(makeWork()) }
        thread.name = name
        thread.start()
    }

    public func submit(_ job: Job) {
        places.wait()
        state.withLock { $0.queue.append(job) }
        signal.signal()
    }

    /// Jobs queued or running.
    public var pending: Int { state.withLock { $0.queue.count + ($0.running ? 1 : 0) } }

    /// Jobs queued or running, and outputs not yet drained: whether a caller still has something
    /// to collect.
    public var outstanding: Int { state.withLock { $0.queue.count + ($0.running ? 1 : 0) + $0.finished.count } }

    /// Outputs finished since the last call, in job order.
    public func drain() -> [Output] {
        state.withLock { state in
            defer { state.finished = [] }
            return state.finished
        }
    }

    /// Finishes the queued jobs (or drops them when `cancel`), then stops the thread.
    public func close(cancel: Bool = false) {
        let dropped = state.withLock { state -> Int in
            state.closed = true
            guard cancel else { return 0 }
            defer { state.queue = [] }
            return state.queue.count
        }
        for _ in 0..<dropped { places.signal() }
        signal.signal()
        done.wait()
    }

    private func loop(_ work: (Job) -> [Output]) {
        while true {
            signal.wait()
            while let job = state.withLock({ state -> Job? in
                guard !state.queue.isEmpty else { return nil }
                state.running = true
                return state.queue.removeFirst()
            }) {
                let outputs = work(job)
                state.withLock {
                    $0.finished += outputs
                    $0.running = false
                }
                places.signal()
            }
            if state.withLock({ $0.closed && $0.queue.isEmpty }) {
                done.signal()
                return
            }
        }
    }
}

/// A value handed to another thread that only that thread uses meanwhile (a loss surface with its
/// own workspaces): not `Sendable` by type, safe by use.
struct Unchecked<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// `work(input)` on a thread of its own, started at once; `value()` waits for its result. For a
/// background job's second half, so that a job with a core free takes about half the time.
final class ConcurrentPart<Input: Sendable, Output: Sendable>: @unchecked Sendable {
    private var result: Output?
    private let done = DispatchSemaphore(value: 0)

    init(_ input: Input, name: String, _ work: @escaping @Sendable (Input) -> Output) {
        let thread = Thread { [self] in
            result = work(input)
            done.signal()
        }
        thread.name = name
        thread.start()
    }

    /// The result, once the thread has finished (the semaphore orders its write before this read).
    func value() -> Output {
        done.wait()
        return result!
    }
}
