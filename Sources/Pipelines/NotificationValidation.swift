import EventLog

/// What is wrong with `notifications[]` as saved (a pipeline's, an application's, or a stage's),
/// each with its path, so that a notification that could never be sent is refused on save.
public enum NotificationValidation {
    public static let types = ["email", "slack", "microsoftteams", "googlechat", "githubStatus", "webhook", "cdevents"]
    public static let whenValues = [
        "pipeline.starting", "pipeline.complete", "pipeline.failed", "stage.starting", "stage.complete", "stage.failed",
        "manualJudgment", "manualJudgmentContinue", "manualJudgmentStop",
    ]

    public static func problems(_ value: JSONValue?, path: String) -> [(path: String, message: String)] {
        guard let value, value != .null else { return [] }
        guard let entries = value.arrayValue else { return [(path, "must be an array")] }
        var problems: [(String, String)] = []
        for (index, entry) in entries.enumerated() {
            let at = "\(path)[\(index)]"
            guard entry.objectValue != nil else {
                problems.append((at, "must be an object"))
                continue
            }
            guard let type = entry["type"]?.stringValue, types.contains(type) else {
                problems.append(("\(at).type", "must be one of \(types.joined(separator: ", "))"))
                continue
            }
            if type != "githubStatus", entry["address"]?.stringValue?.isEmpty ?? true {
                problems.append(("\(at).address", "required: \(type == "email" ? "a mail address" : "the URL to post to")"))
            }
            if let when = entry["when"] {
                for item in when.arrayValue ?? [when] where !whenValues.contains(item.stringValue ?? "") {
                    problems.append(("\(at).when", "\(item) is not one of \(whenValues.joined(separator: ", "))"))
                }
            } else {
                problems.append(("\(at).when", "required: the occasions to notify, e.g. [\"pipeline.failed\"]"))
            }
        }
        return problems
    }

    /// A pipeline's own notifications and its stages'.
    public static func problems(of pipeline: PipelineConfig) -> [(path: String, message: String)] {
        var problems = problems(pipeline.json["notifications"], path: "notifications")
        for (index, stage) in (pipeline.json["stages"]?.arrayValue ?? []).enumerated() {
            problems += Self.problems(stage["notifications"], path: "stages[\(index)].notifications")
        }
        return problems
    }
}
