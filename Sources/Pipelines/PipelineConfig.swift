import EventLog

/// A pipeline, as Spinnaker's pipeline JSON gives it. The JSON object is kept whole, so unknown
/// fields round-trip; the fields Topsail acts on are read from it.
public struct PipelineConfig: Sendable, Hashable {
    public var json: [String: JSONValue]

    public init(json: [String: JSONValue]) {
        self.json = json
    }

    public var id: String? { json["id"]?.stringValue }
    public var application: String? { json["application"]?.stringValue }
    public var name: String? { json["name"]?.stringValue }
    public var disabled: Bool { json["disabled"]?.boolValue ?? false }
    /// Absent means false, as Orca's ExecutionLauncher reads it (Deck writes `true` into new pipelines).
    public var limitConcurrent: Bool { json["limitConcurrent"]?.boolValue ?? false }
    /// With `limitConcurrent`, how many may run at once (0 or absent: one).
    public var maxConcurrentExecutions: Int { json["maxConcurrentExecutions"]?.intValue ?? 0 }
    public var keepWaitingPipelines: Bool { json["keepWaitingPipelines"]?.boolValue ?? false }

    public var stages: [StageConfig] {
        json["stages"]?.arrayValue?.compactMap { $0.objectValue.map(StageConfig.init(json:)) } ?? []
    }

    /// Declared parameters with their defaults.
    public var parameterDefaults: [String: JSONValue] {
        var defaults: [String: JSONValue] = [:]
        for parameter in json["parameterConfig"]?.arrayValue ?? [] {
            if let name = parameter["name"]?.stringValue, let value = parameter["default"], value != .null {
                defaults[name] = value
            }
        }
        return defaults
    }

    /// Names of parameters marked `required`.
    public var requiredParameters: [String] {
        (json["parameterConfig"]?.arrayValue ?? []).compactMap { parameter in
            parameter["required"]?.boolValue == true ? parameter["name"]?.stringValue : nil
        }
    }

    /// A run's parameters: the declared defaults, overridden by `given`. Fails naming every
    /// required parameter that ends up missing or empty, and every value not among its
    /// parameter's `options` (when it `hasOptions`).
    public func parameters(with given: [String: JSONValue]) throws(MissingParameters) -> [String: JSONValue] {
        var values = parameterDefaults
        values.merge(given) { _, new in new }
        let missing = requiredParameters.filter { values[$0] == nil || values[$0] == "" || values[$0] == .null }
        var invalid: [String] = []
        for parameter in json["parameterConfig"]?.arrayValue ?? [] {
            guard parameter["hasOptions"]?.boolValue == true, let name = parameter["name"]?.stringValue,
                  let value = values[name], value != .null, value != "" else { continue }
            let options = (parameter["options"]?.arrayValue ?? []).compactMap { $0["value"] ?? nil }
            if !options.isEmpty, !options.contains(value) {
                let listed = options.compactMap { $0.stringValue ?? $0.doubleValue.map { String($0) } }.joined(separator: ", ")
                invalid.append("\(name) must be one of \(listed)")
            }
        }
        guard missing.isEmpty, invalid.isEmpty else { throw MissingParameters(names: missing, invalid: invalid) }
        return values
    }

    /// The stage with this refId.
    public func stage(_ refID: String) -> StageConfig? {
        stages.first { $0.refID == refID }
    }
}

/// Required pipeline parameters a trigger did not give, and values not among a parameter's options.
public struct MissingParameters: Error, Hashable, CustomStringConvertible {
    public let names: [String]
    public let invalid: [String]

    public init(names: [String], invalid: [String] = []) {
        self.names = names
        self.invalid = invalid
    }

    public var description: String {
        var parts: [String] = []
        if !names.isEmpty { parts.append("missing required parameters: \(names.joined(separator: ", "))") }
        parts += invalid
        return parts.joined(separator: "; ")
    }
}
