import EventLog

/// What a caller may do with an application's pipelines and executions (Fiat's model).
public enum Permission: String, Sendable, CaseIterable {
    case read = "READ"
    case write = "WRITE"
    case execute = "EXECUTE"
}

/// Decides permissions from an application's `permissions` (`{"READ": [roles], "WRITE": [...],
/// "EXECUTE": [...]}`): admins may do everything; an application without permissions is open to
/// every authenticated caller; otherwise the caller needs one of the listed roles. WRITE and
/// EXECUTE include READ: what one may change or run, one may see.
public enum Authorization {
    public static func allows(_ caller: Caller, _ permission: Permission, application: JSONValue?) -> Bool {
        if caller.isAdmin { return true }
        guard let permissions = application?["permissions"]?.objectValue, !permissions.isEmpty else { return true }
        func roles(_ permission: Permission) -> Set<String> {
            Set(permissions[permission.rawValue]?.arrayValue?.compactMap(\.stringValue) ?? [])
        }
        var granted = roles(permission)
        if permission == .read { granted.formUnion(roles(.write)); granted.formUnion(roles(.execute)) }
        return !granted.isDisjoint(with: caller.roles)
    }

    /// Why the caller may not, in words: who, what, and which roles would do.
    public static func refusal(_ caller: Caller, _ permission: Permission, application name: String, _ application: JSONValue?) -> String {
        var roles = Set(application?["permissions"]?[permission.rawValue]?.arrayValue?.compactMap(\.stringValue) ?? [])
        if permission == .read {
            for other in [Permission.write, .execute] {
                roles.formUnion(application?["permissions"]?[other.rawValue]?.arrayValue?.compactMap(\.stringValue) ?? [])
            }
        }
        let needs = roles.isEmpty ? "only admins may" : "it needs one of the roles \(roles.sorted().joined(separator: ", "))"
        return "\(caller.user) may not \(permission.rawValue) application \(name): \(needs)"
    }

    /// Whether `caller` may have things run as `account` (a trigger's `runAsUser`): admins may;
    /// anyone else must hold every role the account has, so nobody gains a role through one.
    public static func mayUse(_ caller: Caller, serviceAccount account: Caller) -> Bool {
        caller.isAdmin || (!account.isAdmin && account.roles.isSubset(of: caller.roles))
    }

    /// Why `caller` may not use `account`, in words.
    public static func serviceAccountRefusal(_ caller: Caller, _ account: Caller) -> String {
        let missing = account.roles.subtracting(caller.roles).sorted()
        return "\(caller.user) may not run as service account \(account.user): it lacks the account's role(s) \(missing.joined(separator: ", "))"
    }

    /// Manual judgment stages may name `selectedStageRoles`: only those roles (and admins) judge.
    public static func mayJudge(_ caller: Caller, stage: JSONValue?) -> Bool {
        let roles = Set(stage?["selectedStageRoles"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        return roles.isEmpty || caller.isAdmin || !roles.isDisjoint(with: caller.roles)
    }
}

/// An application as authorization sees it. A deleted application keeps governing everything
/// that still names it (pipelines, executions, a re-creation) with the permissions it had last;
/// only a name that never was an application is unknown.
public enum ApplicationStanding: Sendable, Hashable {
    case live(JSONValue)
    case deleted(JSONValue)
    case unknown

    /// The document whose `permissions` apply: the live one, or the last one before deletion.
    public var governing: JSONValue? {
        switch self {
        case .live(let document), .deleted(let document): document
        case .unknown: nil
        }
    }
}

/// Permission checks against applications as stored in the log, shared by every path that reads,
/// changes or starts something: the API, child pipeline stages, and trigger intake to come.
public struct ApplicationAccess: Sendable {
    let documents: VersionedDocuments

    public init(store: any EventStore) {
        documents = ApplicationStore(store: store).documents
    }

    public func standing(_ name: String) async throws -> ApplicationStanding {
        guard let stream = try? documents.stream(name) else { return .unknown }
        // A delete always follows a save, so the last two events hold the last document.
        let last = try await documents.store.readStream(stream, from: .max, direction: .backward, limit: 2)
        guard let newest = last.first else { return .unknown }
        guard let saved = last.first(where: { $0.type == documents.savedType }),
              let document = try saved.payload.decode(JSONValue.self)[documents.category]
        else { return .unknown }
        return newest.type == documents.savedType ? .live(document) : .deleted(document)
    }

    /// Why `caller` lacks `permission` on `application`, or nil when it has it. An unknown
    /// application (and an execution without one) is open, as an application without
    /// permissions is.
    public func refusal(_ caller: Caller, _ permission: Permission, application: String?) async throws -> String? {
        guard let application, !caller.isAdmin else { return nil }
        let standing = try await standing(application)
        let document = standing.governing
        guard !Authorization.allows(caller, permission, application: document) else { return nil }
        let refusal = Authorization.refusal(caller, permission, application: application, document)
        if case .deleted = standing { return refusal + " (the application is deleted; its permissions still apply)" }
        return refusal
    }
}

/// Who an execution runs as. Whoever starts an execution records its identity in the trigger's
/// `authentication` (`{"user", "roles"}`, as Orca keeps `authentication` on an execution); what
/// the execution starts in turn (a child pipeline) is authorized as that identity. A trigger's
/// body never sets it: the API replaces whatever a client sent.
public enum TriggerIdentity {
    public static let key = "authentication"

    /// `trigger` with `caller` recorded as the identity it runs as.
    public static func recording(_ caller: Caller, in trigger: JSONValue) -> JSONValue {
        var fields = trigger.objectValue ?? [:]
        fields[key] = ["user": .string(caller.user), "roles": .array(caller.roles.sorted().map(JSONValue.string))]
        return .object(fields)
    }

    /// The identity `trigger` runs as. An execution started before identities were recorded
    /// runs as its trigger's `user` with the roles stored for that user now (none if unknown).
    public static func caller(of trigger: JSONValue, identities: Identities) async throws -> Caller {
        if let recorded = trigger[key], let user = recorded["user"]?.stringValue {
            return Caller(user: user, roles: Set(recorded["roles"]?.arrayValue?.compactMap(\.stringValue) ?? []))
        }
        let user = trigger["user"]?.stringValue ?? "anonymous"
        return Caller(user: user, roles: Identities.validName(user) ? try await identities.roles(of: user) : [])
    }
}
