import EventLog

/// The stage types Topsail runs and the fields each requires.
public enum StageTypeCatalog {
    /// What a required field must hold. Any field may instead hold a `${…}` expression string.
    public enum FieldKind: Sendable {
        case string, number, array, object
    }

    public struct StageType: Sendable {
        public let name: String
        public let required: [(field: String, kind: FieldKind)]
    }

    public static let types: [String: StageType] = Dictionary(uniqueKeysWithValues: [
        StageType(name: "wait", required: [("waitTime", .number)]),
        StageType(name: "manualJudgment", required: []),
        StageType(name: "script", required: [("command", .string)]),
        StageType(name: "pipeline", required: [("application", .string), ("pipeline", .string)]),
        StageType(name: "checkPreconditions", required: [("preconditions", .array)]),
        StageType(name: "evaluateVariables", required: [("variables", .array)]),
        StageType(name: "webhook", required: [("url", .string)]),
        StageType(name: "noop", required: []),
        StageType(name: "createServerGroup", required: []),
        StageType(name: "resizeServerGroup", required: [("serverGroupName", .string), ("capacity", .object)]),
        StageType(name: "destroyServerGroup", required: [("serverGroupName", .string)]),
        StageType(name: "enableServerGroup", required: [("serverGroupName", .string)]),
        StageType(name: "disableServerGroup", required: [("serverGroupName", .string)]),
        StageType(name: "upsertLoadBalancer", required: []),
        StageType(name: "deploy", required: [("clusters", .array)]),
        StageType(name: "terminateInstances", required: [("instanceIds", .array)]),
        StageType(name: "cloneServerGroup", required: []),
        StageType(name: "bake", required: []),
        StageType(name: "findImageFromTags", required: [("packageName", .string)]),
        StageType(name: "disableCluster", required: [("cluster", .string)]),
        StageType(name: "scaleDownCluster", required: [("cluster", .string)]),
        StageType(name: "shrinkCluster", required: [("cluster", .string)]),
        StageType(name: "rollbackCluster", required: [("cluster", .string)]),
        StageType(name: "deleteLoadBalancer", required: [("loadBalancerName", .string)]),
        StageType(name: "upsertSecurityGroup", required: [("securityGroupName", .string)]),
        StageType(name: "deleteSecurityGroup", required: [("securityGroupName", .string)]),
    ].map { ($0.name, $0) })

    public static var supportedNames: [String] { types.keys.sorted() }
}

extension StageTypeCatalog.FieldKind {
    func accepts(_ value: JSONValue) -> Bool {
        if let text = value.stringValue, text.contains("${") { return true }
        switch (self, value) {
        case (.string, .string(let text)): return !text.isEmpty
        case (.number, .number): return true
        case (.number, .string(let text)): return Double(text) != nil
        case (.array, .array): return true
        case (.object, .object): return true
        default: return false
        }
    }

    var description: String {
        switch self {
        case .string: "a non-empty string"
        case .number: "a number"
        case .array: "an array"
        case .object: "an object"
        }
    }
}
