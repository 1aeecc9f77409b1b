// The idle limit of a streaming session (exec, attach, port-forward): every byte either way
// touches it; wait() returns once nothing has moved for `timeout` seconds.
import Foundation
import Synchronization

final class IdleWatch: Sendable {
    let timeout: Double
    private let last: Mutex<ContinuousClock.Instant>

    init(timeout: Double) {
        self.timeout = timeout
        last = Mutex(ContinuousClock.now)
    }

    func touch() { last.withLock { $0 = ContinuousClock.now } }

    /// Returns when the session has been idle for the timeout (or the task is cancelled).
    func wait() async {
        while !Task.isCancelled {
            let deadline = last.withLock { $0 } + .milliseconds(Int64(timeout * 1000))
            if ContinuousClock.now >= deadline { return }
            try? await Task.sleep(until: deadline, clock: .continuous)
        }
    }
}
