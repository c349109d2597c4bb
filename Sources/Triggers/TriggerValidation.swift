import EventLog
import Foundation
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
            case "pubsub":
                required("subscriptionName")
                if let system = trigger["pubsubSystem"]?.stringValue, system != "kafka" {
                    problems.append(Problem(path: "\(path).pubsubSystem", message: "only kafka is offered (Topsail subscribes to Kafka topics)"))
                }
            case "cdevents":
                required("source")
                for problem in PayloadConstraints.problems(trigger["attributeConstraints"]) {
                    problems.append(Problem(path: "\(path).attributeConstraints", message: problem.replacingOccurrences(of: "payloadConstraints", with: "attributeConstraints")))
                }
            case "git":
                required("source")
                if let source = trigger["source"]?.stringValue, !["github", "gitlab", "bitbucket", "stash"].contains(source) {
                    problems.append(Problem(path: "\(path).source", message: "must be github, gitlab, bitbucket or stash"))
                }
                if let branch = trigger["branch"]?.stringValue, !branch.isEmpty, (try? Regex(branch)) == nil {
                    problems.append(Problem(path: "\(path).branch", message: "is not a valid regular expression: \(branch)"))
                }
            case "cron":
                required("cronExpression")
                if let text = trigger["cronExpression"]?.stringValue, !text.isEmpty {
                    do {
                        _ = try CronExpression(text)
                    } catch {
                        problems.append(Problem(path: "\(path).cronExpression", message: error.description))
                    }
                }
                if let zone = trigger["timeZone"], zone.stringValue.flatMap({ TimeZone(identifier: $0) }) == nil {
                    problems.append(Problem(path: "\(path).timeZone", message: "\(zone) is not a time zone: use an IANA name such as Europe/Berlin"))
                }
                if let misfire = trigger["misfire"], !["skip", "fireOnce"].contains(misfire.stringValue ?? "") {
                    problems.append(Problem(path: "\(path).misfire", message: "must be skip or fireOnce"))
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

/// The next fire times of a pipeline's cron triggers, for the answer to a save.
public enum CronPreview {
    public static func next(_ count: Int, of pipeline: PipelineConfig, after now: Date, defaultZone: TimeZone) -> [JSONValue] {
        guard let id = pipeline.id else { return [] }
        var previews: [JSONValue] = []
        for (index, trigger) in (pipeline.json["triggers"]?.arrayValue ?? []).enumerated() {
            guard trigger["type"] == "cron", let text = trigger["cronExpression"]?.stringValue else { continue }
            let key = trigger["id"]?.stringValue ?? String(index)
            guard let expression = try? CronExpression(text, hashKey: "\(id)/\(key)") else { continue }
            let zone = trigger["timeZone"]?.stringValue.flatMap { TimeZone(identifier: $0) } ?? defaultZone
            let times = expression.next(count, after: now, in: zone).map { JSONValue.string($0.formatted(Date.ISO8601FormatStyle())) }
            let zoneName = trigger["timeZone"]?.stringValue ?? (zone.identifier == "GMT" ? "UTC" : zone.identifier)
            previews.append(["trigger": .number(Double(index)), "cronExpression": .string(text), "timeZone": .string(zoneName),
                             "enabled": .bool(trigger["enabled"]?.boolValue == true), "nextFireTimes": .array(times)])
        }
        return previews
    }
}
