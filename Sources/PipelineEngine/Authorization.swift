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
