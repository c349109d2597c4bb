import ArgumentParser
import CLISupport
import Foundation
import PipelineEngine
import StageRunners

/// Which stage types this installation runs. `script` is off unless enabled: it runs commands a
/// pipeline author wrote. A disabled type is refused when a pipeline is saved, applied or
/// triggered, and ended TERMINAL by the worker if one still reaches it.
struct StagePolicyOptions: ParsableArguments {
    @Option(name: .customLong("enable-stage-type"), help: ArgumentHelp(
        "A stage type that is off by default to run here (script), repeatable; adds to $TOPSAIL_ENABLED_STAGE_TYPES (comma-separated).",
        valueName: "type"))
    var enabledStageTypeOptions: [String] = []

    @Option(name: .customLong("disable-stage-type"), help: ArgumentHelp(
        "A stage type this installation does not run or accept (e.g. webhook), repeatable; adds to $TOPSAIL_DISABLED_STAGE_TYPES (comma-separated).",
        valueName: "type"))
    var disabledStageTypeOptions: [String] = []

    var disabledStageTypes: Set<String> {
        installationDisabledStageTypes(enabling: Set(enabledStageTypeOptions)).union(disabledStageTypeOptions)
    }
}

/// How `script` stages are confined when enabled (decision 0009).
struct ScriptSandboxOptions: ParsableArguments {
    @Option(name: .customLong("script-user"), help: "The unprivileged user scripts run as when the engine runs as root (default: $TOPSAIL_SCRIPT_USER or nobody).")
    var user: String?

    @Flag(name: .customLong("script-network"), help: "Let scripts use the host's network, as $TOPSAIL_SCRIPT_NETWORK=true does (without it they have none, not even loopback).")
    var network = false

    @Option(name: .customLong("script-cpu-seconds"), help: "CPU seconds each script process may use (default 600).")
    var cpuSeconds: Int?

    @Option(name: .customLong("script-memory-mb"), help: "Address space of each script process in MiB (default 2048).")
    var memoryMB: Int?

    @Option(name: .customLong("script-processes"), help: "Processes the script user may have at once, across running scripts (default 512).")
    var processes: Int?

    @Option(name: .customLong("script-file-size-mb"), help: "Largest file a script may write, in MiB (default 1024).")
    var fileSizeMB: Int?

    @Option(name: .customLong("script-bind"), help: ArgumentHelp(
        "A host directory mounted read-write at the same path in every script's sandbox, repeatable; adds to $TOPSAIL_SCRIPT_BINDS (comma-separated).",
        valueName: "dir"))
    var binds: [String] = []

    @Option(name: .customLong("script-bind-ro"), help: ArgumentHelp(
        "A host directory mounted read-only in every script's sandbox, repeatable; adds to $TOPSAIL_SCRIPT_READONLY_BINDS.", valueName: "dir"))
    var readOnlyBinds: [String] = []

    func sandbox() throws -> ScriptSandbox {
        var limits = ScriptSandbox.Limits()
        func positive(_ value: Int?, _ flag: String) throws -> Int? {
            guard let value else { return nil }
            guard value > 0 else { throw CLIError("--\(flag) must be a positive number, got \(value)") }
            return value
        }
        if let value = try positive(cpuSeconds, "script-cpu-seconds") { limits.cpuSeconds = value }
        if let value = try positive(memoryMB, "script-memory-mb") { limits.memoryBytes = value << 20 }
        if let value = try positive(processes, "script-processes") { limits.processes = value }
        if let value = try positive(fileSizeMB, "script-file-size-mb") { limits.fileSizeBytes = value << 20 }
        return ScriptSandbox(
            user: user ?? environment("TOPSAIL_SCRIPT_USER") ?? "nobody",
            network: network || environment("TOPSAIL_SCRIPT_NETWORK") == "true", limits: limits,
            binds: commaSeparated("TOPSAIL_SCRIPT_BINDS") + binds, readOnlyBinds: commaSeparated("TOPSAIL_SCRIPT_READONLY_BINDS") + readOnlyBinds)
    }
}

/// Stage types that run only where the operator enables them.
let stageTypesOffByDefault: Set<String> = ["script"]

/// The stage types this installation disables: `$TOPSAIL_DISABLED_STAGE_TYPES`, and the types
/// off by default unless `$TOPSAIL_ENABLED_STAGE_TYPES` or `enabling` names them.
func installationDisabledStageTypes(enabling: Set<String> = []) -> Set<String> {
    let enabled = Set(commaSeparated("TOPSAIL_ENABLED_STAGE_TYPES")).union(enabling)
    return stageTypesOffByDefault.subtracting(enabled).union(commaSeparated("TOPSAIL_DISABLED_STAGE_TYPES"))
}

/// A comma-separated configuration variable's items.
