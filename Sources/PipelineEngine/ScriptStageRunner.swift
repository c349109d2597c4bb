import EventLog
import Foundation
import Orchestration
import Pipelines
import Synchronization

/// `script`: runs `command` through `/bin/sh -c` with `args`, `env` and `workingDirectory`.
/// stdout and stderr are captured into the stage's outputs, each capped; exit code 0 succeeds,
/// anything else fails the stage with its failure options. The process group is killed on cancel
/// (including a `stageTimeoutMs` timeout) and after `timeoutSeconds`.
struct ScriptStageRunner: StageRunner {
    /// Bytes of stdout and of stderr kept in the stage (the rest is dropped and flagged).
    static let outputLimit = 64 * 1024
    static let defaultTimeout = Duration.seconds(3600)

    func run(_ run: StageRun) async throws -> StageOutcome {
        let (stage, work) = (run.stage, run.work)
        guard let command = stage.json["command"]?.stringValue else {
            return StageOutcome(status: stage.failureStatus, outputs: ["error": "script stage has no command"])
        }
        let process = Process()
        // Foundation starts the child as a process group of its own, so signalling the group on
        // cancel or timeout reaches everything the script started.
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command, "topsail-script"] + (stage.json["args"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in stage.json["env"]?.objectValue ?? [:] { environment[key] = value.stringValue ?? "\(value)" }
        process.environment = environment
        if let directory = stage.json["workingDirectory"]?.stringValue {
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
        }
        let stdout = CappedBuffer(limit: Self.outputLimit)
        let stderr = CappedBuffer(limit: Self.outputLimit)
        let outPipe = Pipe()
        let errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = FileHandle.nullDevice

        // stageTimeoutMs is enforced by a durable timer for every stage type; this is the script's own.
        let timeout = stage.json["timeoutSeconds"]?.intValue.map { Duration.seconds($0) } ?? Self.defaultTimeout
        let ending = EndReason()
        let exitCode: Int32 = await withCheckedContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do {
                // Foundation closes the parent's write ends once the child runs, so the readers see
                // the end of the stream when the script (and whatever it started) closed theirs.
                try process.run()
            } catch {
                process.terminationHandler = nil
                ending.set("cannot start /bin/sh: \(error)")
                stdout.append(Data())
                stderr.append(Data())
                continuation.resume(returning: -1)
                return
            }
            // Each pipe is drained by a blocking reader of its own. (Foundation's readabilityHandler
            // on Linux crashed in libdispatch when it was cleared at the end of the stream while the
            // runner cleared it too.)
            stdout.drain(outPipe.fileHandleForReading)
            stderr.drain(errPipe.fileHandleForReading)
            let pid = process.processIdentifier
            work.onCancel {
                ending.set("canceled")
                Self.kill(pid)
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout.timeInterval) {
                guard process.isRunning else { return }
                ending.set("timed out after \(timeout)")
                Self.kill(pid)
            }
        }
        // The last output may still be in the pipes; a background child that keeps them open
        // must not hold the stage, so wait for the end of both briefly.
        for _ in 0..<100 where !(stdout.ended && stderr.ended) {
            try? await Task.sleep(for: .milliseconds(10))
        }

        var outputs: [String: JSONValue] = [
            "exitCode": .number(Double(exitCode)),
            "stdout": .string(stdout.text),
            "stderr": .string(stderr.text),
        ]
        if stdout.truncated || stderr.truncated { outputs["outputTruncated"] = true }
        if let reason = ending.reason {
            outputs["error"] = .string(reason)
            if reason == "canceled" { return StageOutcome(status: .canceled, outputs: outputs) }
            if reason.hasPrefix("timed out") && stage.markSuccessfulOnTimeout { return StageOutcome(status: .succeeded, outputs: outputs) }
            return StageOutcome(status: stage.failureStatus, outputs: outputs)
        }
        return StageOutcome(status: exitCode == 0 ? .succeeded : stage.failureStatus, outputs: outputs)
    }

    /// SIGTERM to the script's process, then SIGKILL after a grace period.
    static func kill(_ pid: Int32) {
        Foundation.kill(-pid, SIGTERM)
        DispatchQueue.global().asyncAfter(deadline: .now() + 5) { Foundation.kill(-pid, SIGKILL) }
    }
}

/// Collects a stream's bytes up to a limit.
final class CappedBuffer: Sendable {
    private let state = Mutex((data: Data(), truncated: false, ended: false))
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Reads `handle` to its end on a thread of its own (blocking reads never hold a cooperative
    /// thread), then closes it.
    func drain(_ handle: FileHandle) {
        let thread = Thread { [self] in
            while true {
                let data = handle.availableData
                append(data)
                if data.isEmpty { break }
            }
            try? handle.close()
        }
        thread.name = "topsail.script-output"
        thread.start()
    }

    /// Appends a chunk; an empty chunk is the end of the stream.
    func append(_ data: Data) {
        state.withLock { state in
            if data.isEmpty { state.ended = true }
            let room = limit - state.data.count
            if data.count > room { state.truncated = true }
            if room > 0 { state.data.append(data.prefix(room)) }
        }
    }

    var text: String { state.withLock { String(decoding: $0.data, as: UTF8.self) } }
    var truncated: Bool { state.withLock { $0.truncated } }
    var ended: Bool { state.withLock { $0.ended } }
}

/// Why a script ended other than by itself, first reason wins.
final class EndReason: Sendable {
    private let value = Mutex<String?>(nil)
    func set(_ reason: String) { value.withLock { if $0 == nil { $0 = reason } } }
    var reason: String? { value.withLock { $0 } }
}

extension Duration {
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
