import EventLog
import Foundation
import Logging
import Processes

/// The `podman` provider: a server group is `desired` containers of one image on this machine,
/// each publishing the image's port on loopback, labelled with the account, application,
/// cluster, server group, region and its slot. Operations converge to the request by slot —
/// slot `i` of server group `g` is the container `g-i<i>` — so running one again launches
/// nothing more. Containers run with runc and explicit ulimits (ENVIRONMENT.md: crun and the
/// default limits fail here).
public struct PodmanProvider: CloudProvider {
    public let type = "podman"
    let account: String
    let executable: String
    /// The account's load balancers (one HAProxy each, under the state directory).
    let haproxy: HAProxy
    let logger: Logger

    /// `stateDirectory` keeps the load balancers' configurations and sockets ($TOPSAIL_CLOUD_STATE_DIR,
    /// else .topsail/clouds under the working directory).
    public init(account: String, executable: String = "/usr/bin/podman", stateDirectory: URL? = nil, logger: Logger) {
        self.account = account
        self.executable = executable
        let root = stateDirectory ?? ProcessInfo.processInfo.environment["TOPSAIL_CLOUD_STATE_DIR"].map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".topsail/clouds")
        haproxy = HAProxy(directory: root.appendingPathComponent(account).appendingPathComponent("load-balancers"))
        self.logger = logger
    }

    static let label = "topsail"

    public func createServerGroup(_ spec: ServerGroupSpec, key: String) async throws(CloudError) -> ServerGroupState {
        if let problem = spec.problem { throw CloudError(problem) }
        try await converge(spec, key: key)
        return try await state(of: spec.name, region: spec.region, capacity: spec.capacity, fallbackImage: spec.image)
    }

    public func resizeServerGroup(_ name: ServerGroupName, region: String, capacity: Capacity, key: String) async throws(CloudError) -> ServerGroupState {
        if let problem = capacity.problem { throw CloudError(problem) }
        let running = try await containers(of: name)
        guard let any = running.first else { throw CloudError("server group \(name) in \(account)/\(region) has no instances to resize from: create it first") }
        let spec = ServerGroupSpec(name: name, region: region, image: any.image, capacity: capacity, port: any.port, environment: [:],
                                   loadBalancers: any.loadBalancers)
        try await converge(spec, key: key)
        return try await state(of: name, region: region, capacity: capacity, fallbackImage: any.image)
    }

    public func destroyServerGroup(_ name: ServerGroupName, region: String, key: String) async throws(CloudError) {
        let members = try await containers(of: name)
        for balancer in Set(members.flatMap(\.loadBalancers)) where haproxy.running(balancer) {
            try haproxy.converge(balancer, prefix: "\(name)-i", wanted: [:], enabled: false)
        }
        let ids = members.map(\.id)
        guard !ids.isEmpty else { return }
        try await podman(["rm", "--force", "--time", "2"] + ids)
    }

    public func terminateInstances(_ ids: [String], key: String) async throws(CloudError) {
        guard !ids.isEmpty else { return }
        // Only this account's containers: an id from elsewhere is not Topsail's to remove.
        let ours = Set(try await list(filters: ["label=\(Self.label).account=\(account)"]).map(\.id))
        let chosen = ids.filter { id in ours.contains { $0.hasPrefix(id) || id.hasPrefix($0) } }
        guard !chosen.isEmpty else { return }
        try await podman(["rm", "--force", "--time", "2"] + chosen)
    }

    public func serverGroups(of application: String) async throws(CloudError) -> [ServerGroupState] {
        let all = try await list(filters: ["label=\(Self.label).account=\(account)", "label=\(Self.label).application=\(application)"])
        var groups: [String: [Container]] = [:]
        for container in all { groups[container.serverGroup, default: []].append(container) }
        return groups.keys.sorted().compactMap { key in
            guard let name = ServerGroupName(parsing: key), let members = groups[key] else { return nil }
            let desired = members.first?.desired ?? members.count
            return ServerGroupState(
                name: name, region: members.first?.region ?? "local", image: members.first?.image ?? "",
                capacity: Capacity(min: members.first?.minimum ?? 0, max: members.first?.maximum ?? desired, desired: desired),
                instances: members.sorted { $0.slot < $1.slot }.map(\.instance))
        }
    }

    public func upsertLoadBalancer(_ name: String, port: Int, healthCheck: String, key: String) async throws(CloudError) {
        try await haproxy.upsert(name: name, port: port, healthCheck: healthCheck)
        logger.info("load balancer up", metadata: ["account": "\(account)", "load-balancer": "\(name)", "port": "\(port)", "directory": "\(haproxy.directory.path)"])
        // Its server groups' instances come back after a restart of the process.
        let all = try await list(filters: ["label=\(Self.label).account=\(account)"]).filter { $0.loadBalancers.contains(name) && $0.running }
        var byGroup: [String: [Container]] = [:]
        for container in all { byGroup[container.serverGroup, default: []].append(container) }
        for (group, members) in byGroup {
            let wanted = Dictionary(uniqueKeysWithValues: members.compactMap { member in member.address.map { ("\(group)-i\(member.slot)", $0) } })
            try haproxy.converge(name, prefix: "\(group)-i", wanted: wanted, enabled: true)
        }
    }

    public func deleteLoadBalancer(_ name: String, key: String) async throws(CloudError) {
        try await haproxy.delete(name: name)
    }

    public func setServerGroupEnabled(_ name: ServerGroupName, region: String, enabled: Bool, key: String) async throws(CloudError) {
        let members = try await containers(of: name)
        guard !members.isEmpty else { throw CloudError("server group \(name) in \(account)/\(region) has no instances") }
        for balancer in Set(members.flatMap(\.loadBalancers)) {
            // Disabling drains: in-flight requests finish, new ones go elsewhere.
            try haproxy.setState(balancer, prefix: "\(name)-i", state: enabled ? "ready" : "drain")
        }
    }

    // MARK: - Converging

    /// Launches the missing slots below `desired` (and relaunches slots whose container stopped),
    /// and removes the slots at or above it.
    func converge(_ spec: ServerGroupSpec, key: String) async throws(CloudError) {
        let existing = try await containers(of: spec.name)
        var stale: [String] = []
        var present: Set<Int> = []
        for container in existing {
            if container.slot >= spec.capacity.desired || !container.running { stale.append(container.id) } else { present.insert(container.slot) }
        }
        for balancer in spec.loadBalancers {
            guard haproxy.running(balancer) else { throw CloudError("there is no load balancer \(balancer) in account \(account): upsert it first") }
        }
        if !stale.isEmpty { try await podman(["rm", "--force", "--time", "2"] + stale) }
        for slot in 0..<spec.capacity.desired where !present.contains(slot) {
            var arguments = [
                "--runtime", "runc", "run", "--detach", "--name", "\(spec.name)-i\(slot)",
                "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                "--publish", "127.0.0.1::\(spec.port)",
            ]
            let labels: [(String, String)] = [
                ("account", account), ("application", spec.name.application), ("cluster", spec.name.cluster),
                ("server-group", spec.name.description), ("region", spec.region), ("slot", String(slot)),
                ("operation", key), ("image", spec.image), ("port", String(spec.port)),
                ("min", String(spec.capacity.min)), ("max", String(spec.capacity.max)), ("desired", String(spec.capacity.desired)),
                ("load-balancers", spec.loadBalancers.joined(separator: ",")),
            ]
            for (name, value) in labels { arguments += ["--label", "\(Self.label).\(name)=\(value)"] }
            for (name, value) in spec.environment.sorted(by: { $0.key < $1.key }) { arguments += ["--env", "\(name)=\(value)"] }
            arguments.append(spec.image)
            do {
                try await podman(arguments)
            } catch {
                // Another delivery of the same operation launched this slot meanwhile.
                if error.description.contains("already in use") { continue }
                throw error
            }
        }
    }

    func state(of name: ServerGroupName, region: String, capacity: Capacity, fallbackImage: String) async throws(CloudError) -> ServerGroupState {
        var members = try await containers(of: name)
        // Its instances serve behind its load balancers (a new one enabled: the strategy decides
        // when to disable the old).
        let balancers = Set(members.flatMap(\.loadBalancers))
        for balancer in balancers {
            let wanted = Dictionary(uniqueKeysWithValues: members.filter(\.running).compactMap { member in member.address.map { ("\(name)-i\(member.slot)", $0) } })
            try haproxy.converge(balancer, prefix: "\(name)-i", wanted: wanted, enabled: true)
        }
        if !balancers.isEmpty { members = try await containers(of: name) }
        return ServerGroupState(name: name, region: region, image: members.first?.image ?? fallbackImage, capacity: capacity,
                                instances: members.sorted { $0.slot < $1.slot }.map(\.instance))
    }

    // MARK: - podman

    struct Container {
        var id: String
        var serverGroup: String
        var region: String
        var slot: Int
        var image: String
        var port: Int
        var running: Bool
        var address: String?
        var minimum: Int?
        var maximum: Int?
        var desired: Int?
        var loadBalancers: [String] = []

        var instance: InstanceState {
            InstanceState(id: id, slot: slot, health: running ? .up : .down, address: address)
        }
    }

    func containers(of name: ServerGroupName) async throws(CloudError) -> [Container] {
        try await list(filters: ["label=\(Self.label).account=\(account)", "label=\(Self.label).server-group=\(name)"])
    }

    func list(filters: [String]) async throws(CloudError) -> [Container] {
        let output = try await podman(["ps", "--all", "--format", "json"] + filters.flatMap { ["--filter", $0] })
        let rows: [JSONValue]
        do {
            rows = try JSONText(output.isEmpty ? "[]" : output).decode(JSONValue.self).arrayValue ?? []
        } catch {
            throw CloudError("podman ps printed what is not JSON: \(output.prefix(200))")
        }
        return rows.compactMap { row in
            let labels = row["Labels"]?.objectValue ?? [:]
            func label(_ name: String) -> String? { labels["\(Self.label).\(name)"]?.stringValue }
            guard let id = row["Id"]?.stringValue, let group = label("server-group"), let slot = label("slot").flatMap(Int.init) else { return nil }
            let port = label("port").flatMap(Int.init) ?? 8080
            let published = row["Ports"]?.arrayValue?.first { $0["container_port"]?.intValue == port }
            let address = published.flatMap { entry in entry["host_port"]?.intValue.map { "\(entry["host_ip"]?.stringValue ?? "127.0.0.1"):\($0)" } }
            return Container(
                id: String(id.prefix(12)), serverGroup: group, region: label("region") ?? "local", slot: slot, image: label("image") ?? row["Image"]?.stringValue ?? "",
                port: port, running: row["State"]?.stringValue == "running", address: address,
                minimum: label("min").flatMap(Int.init), maximum: label("max").flatMap(Int.init), desired: label("desired").flatMap(Int.init),
                loadBalancers: (label("load-balancers") ?? "").split(separator: ",").map(String.init))
        }
    }

    @discardableResult
    func podman(_ arguments: [String]) async throws(CloudError) -> String {
        let finished: UnmaskedProcess.Finished
        do {
            finished = try await UnmaskedProcess.run(executable, arguments, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw CloudError("cannot run \(executable): \(error) (is podman installed? ops/setup installs it)", retriable: false)
        }
        guard finished.status == 0 else {
            let message = finished.errors.trimmingCharacters(in: .whitespacesAndNewlines)
            throw CloudError("podman \(arguments.first { !$0.hasPrefix("-") && $0 != "runc" } ?? "") failed: \(message.prefix(500))", retriable: true)
        }
        return finished.output
    }
}
