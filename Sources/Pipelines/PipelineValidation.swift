import EventLog

/// One thing wrong with a pipeline, located by a JSON path and, for stage problems, the stage.
public struct PipelineProblem: Sendable, Hashable, CustomStringConvertible {
    /// Where, e.g. `stages[2].requisiteStageRefIds[0]`.
    public let path: String
    /// The stage's refId (or name when it has none), for stage problems.
    public let stage: String?
    public let message: String

    public init(path: String, stage: String?, message: String) {
        self.path = path
        self.stage = stage
        self.message = message
    }

    public var description: String {
        let place = stage.map { "stage '\($0)' (\(path))" } ?? path
        return "\(place): \(message)"
    }
}

/// Checks a pipeline before it runs: shape, stage references, cycles, types, required fields.
public enum PipelineValidation {
    /// Parses pipeline JSON text and validates it. Stages of a type in `disabledStageTypes`
    /// (disabled on this installation, e.g. `script`) are problems too.
    public static func parse(_ json: JSONValue, disabledStageTypes: Set<String> = []) -> Result<PipelineConfig, PipelineProblems> {
        guard let object = json.objectValue else {
            return .failure(PipelineProblems([PipelineProblem(path: "$", stage: nil, message: "a pipeline must be a JSON object, not \(json.typeName)")]))
        }
        let pipeline = PipelineConfig(json: object)
        let problems = validate(pipeline) + disabledStages(of: pipeline, disabledStageTypes)
        return problems.isEmpty ? .success(pipeline) : .failure(PipelineProblems(problems))
    }

    /// The pipeline's stages whose type this installation has disabled, one problem each.
    public static func disabledStages(of pipeline: PipelineConfig, _ disabledStageTypes: Set<String>) -> [PipelineProblem] {
        guard !disabledStageTypes.isEmpty, let stages = pipeline.json["stages"]?.arrayValue else { return [] }
        return stages.enumerated().compactMap { index, raw in
            guard let object = raw.objectValue, let type = object["type"]?.stringValue, disabledStageTypes.contains(type) else { return nil }
            let stage = StageConfig(json: object)
            return PipelineProblem(path: "stages[\(index)].type", stage: stage.refID ?? "#\(index)",
                                   message: disabledMessage(type))
        }
    }

    /// Why a stage of `type` cannot run here, and how an operator turns it on.
    public static func disabledMessage(_ type: String) -> String {
        "stage type '\(type)' is disabled on this installation (an operator enables it with --enable-stage-type \(type) or TOPSAIL_ENABLED_STAGE_TYPES)"
    }

    public static func validate(_ pipeline: PipelineConfig) -> [PipelineProblem] {
        var problems: [PipelineProblem] = []
        guard let rawStages = pipeline.json["stages"]?.arrayValue else {
            return [PipelineProblem(path: "stages", stage: nil, message: "a pipeline needs a 'stages' array")]
        }
        if rawStages.isEmpty {
            problems.append(PipelineProblem(path: "stages", stage: nil, message: "a pipeline needs at least one stage"))
        }
        var firstIndexOfRef: [String: Int] = [:]
        for (index, raw) in rawStages.enumerated() {
            let path = "stages[\(index)]"
            guard let object = raw.objectValue else {
                problems.append(PipelineProblem(path: path, stage: nil, message: "a stage must be an object, not \(raw.typeName)"))
                continue
            }
            let stage = StageConfig(json: object)
            let label = stage.refID ?? stage.json["name"]?.stringValue ?? "#\(index)"
            guard let refID = stage.refID, !refID.isEmpty else {
                problems.append(PipelineProblem(path: "\(path).refId", stage: label, message: "missing refId (a string or number unique in the pipeline)"))
                continue
            }
            if let earlier = firstIndexOfRef[refID] {
                problems.append(PipelineProblem(path: "\(path).refId", stage: label, message: "duplicate refId '\(refID)', also used by stages[\(earlier)]"))
            } else {
                firstIndexOfRef[refID] = index
            }
            problems += validateFields(of: stage, path: path, label: label)
        }
        for (index, raw) in rawStages.enumerated() {
            guard let object = raw.objectValue else { continue }
            let stage = StageConfig(json: object)
            let label = stage.refID ?? "#\(index)"
            guard let requisites = object["requisiteStageRefIds"] else { continue }
            guard let list = requisites.arrayValue else {
                problems.append(PipelineProblem(path: "stages[\(index)].requisiteStageRefIds", stage: label, message: "must be an array of refIds"))
                continue
            }
            for (position, value) in list.enumerated() {
                let fieldPath = "stages[\(index)].requisiteStageRefIds[\(position)]"
                guard let ref = StageConfig.refText(value) else {
                    problems.append(PipelineProblem(path: fieldPath, stage: label, message: "a refId must be a string or a whole number"))
                    continue
                }
                if firstIndexOfRef[ref] == nil {
                    problems.append(PipelineProblem(path: fieldPath, stage: label, message: "unknown refId '\(ref)'"))
                } else if ref == stage.refID {
                    problems.append(PipelineProblem(path: fieldPath, stage: label, message: "a stage cannot require itself"))
                }
            }
        }
        if problems.isEmpty, let cycle = StageGraph(pipeline.stages).cycle() {
            let index = firstIndexOfRef[cycle[0]] ?? 0
            problems.append(PipelineProblem(
                path: "stages[\(index)].requisiteStageRefIds", stage: cycle[0],
                message: "requisiteStageRefIds form a cycle: \((cycle + [cycle[0]]).joined(separator: " → "))"))
        }
        return problems
    }

    private static func validateFields(of stage: StageConfig, path: String, label: String) -> [PipelineProblem] {
        guard let type = stage.type, !type.isEmpty else {
            return [PipelineProblem(path: "\(path).type", stage: label, message: "missing type (one of \(StageTypeCatalog.supportedNames.joined(separator: ", ")))")]
        }
        guard let definition = StageTypeCatalog.types[type] else {
            return [PipelineProblem(path: "\(path).type", stage: label,
                                    message: "unknown stage type '\(type)' (supported: \(StageTypeCatalog.supportedNames.joined(separator: ", ")))")]
        }
        var problems: [PipelineProblem] = []
        for (field, kind) in definition.required {
            guard let value = stage.json[field], value != .null else {
                problems.append(PipelineProblem(path: "\(path).\(field)", stage: label, message: "a \(type) stage needs '\(field)' (\(kind.description))"))
                continue
            }
            if !kind.accepts(value) {
                problems.append(PipelineProblem(path: "\(path).\(field)", stage: label, message: "'\(field)' must be \(kind.description), not \(value.typeName)"))
            }
        }
        for field in ["stageTimeoutMs", "backoffPeriodMs"] {
            if let value = stage.json[field], value.intValue.map({ $0 < 0 }) ?? true {
                problems.append(PipelineProblem(path: "\(path).\(field)", stage: label, message: "'\(field)' must be a whole number of milliseconds, 0 or more"))
            }
        }
        for field in ["failPipeline", "continuePipeline", "completeOtherBranchesThenFail", "markSuccessfulOnTimeout"] {
            if let value = stage.json[field], value.boolValue == nil {
                problems.append(PipelineProblem(path: "\(path).\(field)", stage: label, message: "'\(field)' must be true or false, not \(value.typeName)"))
            }
        }
        return problems
    }
}

/// Every problem found in a pipeline.
public struct PipelineProblems: Error, Sendable, Hashable, CustomStringConvertible {
    public let problems: [PipelineProblem]

    public init(_ problems: [PipelineProblem]) {
        self.problems = problems
    }

    public var description: String {
        "invalid pipeline: " + problems.map(\.description).joined(separator: "; ")
    }
}
