import Access
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines
import Synchronization

/// `script`: runs `command` through `/bin/sh -c` with `args` and `env`, confined by the
/// installation's ``ScriptSandbox`` (off unless the operator enables the stage type). stdout and
/// stderr are captured into the stage's outputs, each capped; exit code 0 succeeds, anything else
/// fails the stage with its failure options, naming the limit when one explains the failure. The
/// sandbox is killed on cancel (including a `stageTimeoutMs` timeout), after `timeoutSeconds`,
/// and with the engine.
struct ScriptStageRunner: StageRunner {
    /// Bytes of stdout and of stderr kept in the stage (the rest is dropped and flagged).
    static let outputLimit = 64 * 1024
    static let defaultTimeout = Duration.seconds(3600)
    static let path = "/usr/local/bin:/usr/bin:/bin"

    let sandbox: ScriptSandbox

    func run(_ run: StageRun) async throws -> StageOutcome {
        let (stage, work) = (run.stage, run.work)
        guard let command = stage.json["command"]?.stringValue else {
            return StageOutcome(status: stage.failureStatus, outputs: ["error": "script stage has no command"])
        }
        var environment = ["PATH": Self.path, "HOME": ScriptSandbox.workspace, "TOPSAIL_EXECUTION_ID": run.executionID, "TOPSAIL_STAGE_ID": run.refID]
        for (key, value) in stage.json["env"]?.objectValue ?? [:] {
            guard Self.isVariableName(key) else {
                return StageOutcome(status: stage.failureStatus, outputs: ["error": .string("env: '\(key)' is not a variable name (letters, digits and '_', not starting with a digit)")])
            }
            environment[key] = value.stringValue ?? "\(value)"
        }
        let identity: ScriptSandbox.Identity
        let workspace: String
        do {
            identity = try sandbox.identity()
            workspace = try sandbox.makeWorkspace(identity)
        } catch {
            return StageOutcome(status: stage.failureStatus, outputs: ["error": .string("cannot prepare the script sandbox: \(error)")])
        }
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        var directory = ScriptSandbox.workspace
        if let given = stage.json["workingDirectory"]?.stringValue, !given.isEmpty {
            // Relative to the workspace, made if missing; an absolute path is one inside the sandbox.
            if given.hasPrefix("/") {
                directory = given
            } else {
                guard !given.split(separator: "/").contains("..") else {
                    return StageOutcome(status: stage.failureStatus, outputs: ["error": "workingDirectory must stay inside the workspace (no '..')"])
                }
                directory = "\(ScriptSandbox.workspace)/\(given)"
                try? FileManager.default.createDirectory(atPath: "\(workspace)/\(given)", withIntermediateDirectories: true)
                if case let .switchTo(uid, gid) = identity { chownTree(workspace, uid, gid) }
            }
        }
        let line = sandbox.commandLine(
            command, arguments: stage.json["args"]?.arrayValue?.compactMap(\.stringValue) ?? [], environment: environment,
            workspace: workspace, directory: directory, identity: identity)
        let stdout = CappedBuffer(limit: Self.outputLimit)
        let stderr = CappedBuffer(limit: Self.outputLimit)

        // stageTimeoutMs is enforced by a durable timer for every stage type; this is the script's own.
        let timeout = stage.json["timeoutSeconds"]?.intValue.map { Duration.seconds($0) } ?? Self.defaultTimeout
        let ending = EndReason()
        let exitCode: Int32 = await withCheckedContinuation { continuation in
            ProcessLauncher.launch {
                let process = Process()
                // Foundation starts the child as a process group of its own, so signalling the
                // group on cancel or timeout reaches the sandbox and everything in it.
                process.executableURL = URL(fileURLWithPath: line[0])
                process.arguments = Array(line.dropFirst())
                process.environment = [:]
                let outPipe = Pipe()
                let errPipe = Pipe()
                process.standardOutput = outPipe
                process.standardError = errPipe
                process.standardInput = FileHandle.nullDevice
                // The handler holds the process until it ran (nothing else does once this job
                // returns), then lets go of it.
                process.terminationHandler = { [process] ended in
                    continuation.resume(returning: ended.terminationReason == .uncaughtSignal ? 128 + ended.terminationStatus : ended.terminationStatus)
                    process.terminationHandler = nil
                }
                do {
                    // Foundation closes the parent's write ends once the child runs, so the readers
                    // see the end of the stream when the script (and whatever it started) closed theirs.
                    try process.run()
                } catch {
                    process.terminationHandler = nil
                    ending.set("cannot start the script sandbox (\(line[0])): \(error)")
                    stdout.append(Data())
                    stderr.append(Data())
                    continuation.resume(returning: -1)
                    return
                }
                // Each pipe is drained by a blocking reader of its own. (Foundation's
                // readabilityHandler on Linux crashed in libdispatch when it was cleared at the end
                // of the stream while the runner cleared it too.)
                stdout.drain(outPipe.fileHandleForReading)
                stderr.drain(errPipe.fileHandleForReading)
                let pid = process.processIdentifier
                work.onCancel {
                    ending.set("canceled")
                    Self.kill(pid)
                }
                DispatchQueue.global().asyncAfter(deadline: .now() + timeout.timeInterval) {
                    guard !ending.finished else { return }
                    ending.set("timed out after \(timeout)")
                    Self.kill(pid)
                }
            }
        }
        ending.finish()
        // The last output may still be in the pipes; wait for the end of both briefly (the
        // sandbox's end closes every copy of them, so this is short).
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
        guard exitCode == 0 else {
            let limit = sandbox.limitReached(exitCode: exitCode, stderr: stderr.text)
            outputs["error"] = .string("the script exited with code \(exitCode)" + (limit.map { ": \($0)" } ?? ""))
            return StageOutcome(status: stage.failureStatus, outputs: outputs)
        }
        return StageOutcome(status: .succeeded, outputs: outputs)
    }

    static func isVariableName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !("0"..."9").contains(first), name.count <= 200 else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }

    /// SIGTERM to the sandbox's process group, then SIGKILL after a grace period.
    static func kill(_ pid: Int32) {
        Foundation.kill(-pid, SIGTERM)
        DispatchQueue.global().asyncAfter(deadline: .now() + 5) { Foundation.kill(-pid, SIGKILL) }
    }

    private func chownTree(_ root: String, _ uid: UInt32, _ gid: UInt32) {
        chown(root, uid, gid)
        for item in FileManager.default.enumerator(atPath: root)?.compactMap({ $0 as? String }) ?? [] { chown("\(root)/\(item)", uid, gid) }
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

/// Why a script ended other than by itself, first reason wins; once it ended by itself, nothing
/// is set any more.
final class EndReason: Sendable {
    private let value = Mutex<(reason: String?, finished: Bool)>((nil, false))
    func set(_ reason: String) { value.withLock { if $0.reason == nil && !$0.finished { $0.reason = reason } } }
    func finish() { value.withLock { $0.finished = true } }
    var reason: String? { value.withLock { $0.reason } }
    var finished: Bool { value.withLock { $0.finished } }
}

extension Duration {
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
