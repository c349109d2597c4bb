import EventLog
import Foundation
import Logging
import Processes
import Synchronization

/// Containers of Topsail's server groups that die, as `podman events` reports them: the
/// observer looks at once instead of at its next round (decision 0018). The stream is a hint to
/// look, never a record: what is recorded comes from comparing the provider with the log, so a
/// missed event costs only time. `podman events` is started again if it ends.
public final class PodmanEvents: Sendable {
    /// A container of a Topsail account that stopped running.
    public struct Died: Sendable, Hashable {
        public var container: String
        public var account: String
    }

    let executable: String
    let logger: Logger
    private let state = Mutex<(pid: pid_t?, stopped: Bool)>((nil, false))

    public init(executable: String = "/usr/bin/podman", logger: Logger) {
        self.executable = executable
        self.logger = logger
    }

    /// Reads the event stream on a thread of its own until `stop()`, calling `handler` for each
    /// container of a Topsail account that dies.
    public func start(_ handler: @escaping @Sendable (Died) -> Void) {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            logger.notice("no podman here: deaths of containers are noticed at the observer's rounds only", metadata: ["podman": "\(executable)"])
            return
        }
        Thread.detachNewThread { [self] in
            while !state.withLock({ $0.stopped }) {
                follow(handler)
                if !state.withLock({ $0.stopped }) { Thread.sleep(forTimeInterval: 1) }
            }
        }
    }

    /// Ends the stream (and the `podman events` process).
    public func stop() {
        let pid = state.withLock { state -> pid_t? in
            state.stopped = true
            return state.pid
        }
        if let pid { kill(pid, SIGTERM) }
    }

    /// One run of `podman events`, read to its end.
    private func follow(_ handler: @Sendable (Died) -> Void) {
        let started: (pid: pid_t, output: Int32)
        var command = [executable, "events", "--format", "json", "--filter", "type=container", "--filter", "event=died"]
        // Killed with this thread (and so with the engine, even by kill -9), not left following.
        if FileManager.default.isExecutableFile(atPath: Self.setpriv) { command = [Self.setpriv, "--pdeathsig", "KILL", "--"] + command }
        do {
            started = try UnmaskedProcess.spawnReading(command[0], Array(command.dropFirst()), environment: ProcessInfo.processInfo.environment, errors: "/dev/null")
        } catch {
            logger.warning("cannot follow podman events; retrying", metadata: ["error": "\(error)"])
            return
        }
        let stopped = state.withLock { state -> Bool in
            state.pid = started.pid
            return state.stopped
        }
        if stopped { kill(started.pid, SIGTERM) }
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(started.output, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            pending.append(contentsOf: buffer[0..<count])
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                if let died = Self.died(line) { handler(died) }
            }
            // A line longer than this is not an event of ours.
            if pending.count > 1 << 20 { pending.removeAll() }
        }
        close(started.output)
        var status: Int32 = 0
        while waitpid(started.pid, &status, 0) < 0 && errno == EINTR {}
        state.withLock { $0.pid = nil }
    }

    static let setpriv = "/usr/bin/setpriv"

    /// The death in one line of `podman events --format json`, if it is of a Topsail container.
    static func died(_ line: [UInt8]) -> Died? {
        guard let event = try? JSONText(String(decoding: line, as: UTF8.self)).decode(JSONValue.self),
              event["Status"] == "died", let name = event["Name"]?.stringValue,
              let account = event["Attributes"]?["topsail.account"]?.stringValue else { return nil }
        return Died(container: name, account: account)
    }
}
