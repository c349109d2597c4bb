import EventLog
import Pipelines

/// What is wrong with a pipeline's `triggers` as saved, each with its path: caught on save, not
/// found out when a delivery never fires.
public enum TriggerValidation {
    public struct Problem: Sendable, Hashable {
        public let path: String
        public let message: String
    }

    public static let knownTypes = Set(["manual", "webhook", "git", "cron", "pipeline", "pubsub", "cdevents", "docker"] + Build.triggerTypes)

    public static func problems(of pipeline: PipelineConfig) -> [Problem] {
        guard let value = pipeline.json["triggers"] else { return [] }
        guard let triggers = value.arrayValue else { return [Problem(path: "triggers", message: "must be an array")] }
        var problems: [Problem] = []
        for (index, trigger) in triggers.enumerated() {
            let path = "triggers[\(index)]"
            guard trigger.objectValue != nil else {
                problems.append(Problem(path: path, message: "must be an object"))
                continue
            }
            guard let type = trigger["type"]?.stringValue, !type.isEmpty else {
                problems.append(Problem(path: "\(path).type", message: "required: one of \(knownTypes.sorted().joined(separator: ", "))"))
                continue
            }
            if let enabled = trigger["enabled"], enabled.boolValue == nil {
                problems.append(Problem(path: "\(path).enabled", message: "must be true or false"))
            }
            for problem in PayloadConstraints.problems(trigger["payloadConstraints"]) {
                problems.append(Problem(path: "\(path).payloadConstraints", message: problem))
            }
            func required(_ field: String) {
                if trigger[field]?.stringValue?.isEmpty ?? true { problems.append(Problem(path: "\(path).\(field)", message: "required for a \(type) trigger")) }
            }
            switch type {
            case "webhook":
                required("source")
            case "git":
                required("source")
                if let source = trigger["source"]?.stringValue, !["github", "gitlab", "bitbucket", "stash"].contains(source) {
                    problems.append(Problem(path: "\(path).source", message: "must be github, gitlab, bitbucket or stash"))
                }
                if let branch = trigger["branch"]?.stringValue, !branch.isEmpty, (try? Regex(branch)) == nil {
                    problems.append(Problem(path: "\(path).branch", message: "is not a valid regular expression: \(branch)"))
                }
            case "pipeline":
                required("pipeline")
                let statuses = ["successful", "failed", "canceled", "suspended"]
                for status in trigger["status"]?.arrayValue ?? [] where !statuses.contains(status.stringValue ?? "") {
                    problems.append(Problem(path: "\(path).status", message: "\(status) is not one of \(statuses.joined(separator: ", "))"))
                }
            case _ where Build.triggerTypes.contains(type):
                required("master")
                required("job")
            default:
                break
            }
        }
        return problems
    }
}
