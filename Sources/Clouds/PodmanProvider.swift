import EventLog
import Foundation
import Logging
import Processes

/// The `podman` provider: a server group is `desired` containers of one image on this machine,
/// each publishing the image's port on loopback, labelled with the account, application,
/// cluster, server group, region and its slot. Operations converge to the request by slot —
/// slot `i` of server group `g` in account `a` is the container `a.g-i<i>` — so running one again
/// launches nothing more. Containers run with runc and explicit ulimits (ENVIRONMENT.md: crun and
/// the default limits fail here).
public struct PodmanProvider: CloudProvider {
    public let type = "podman"
    let account: String
    let executable: String
    /// The account's state on this machine: its load balancers (one HAProxy each), security
    /// groups, and which server groups are disabled.
    let root: URL
    let haproxy: HAProxy
    let logger: Logger

    /// `stateDirectory` keeps the accounts' load balancers, security groups and server group states
    /// ($TOPSAIL_CLOUD_STATE_DIR, else .topsail/clouds under the working directory).
    public init(account: String, executable: String = "/usr/bin/podman", stateDirectory: URL? = nil, logger: Logger) {
        self.account = account
        self.executable = executable
        let base = stateDirectory ?? ProcessInfo.processInfo.environment["TOPSAIL_CLOUD_STATE_DIR"].map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".topsail/clouds")
        root = base.appendingPathComponent(account)
        haproxy = HAProxy(directory: root.appendingPathComponent("load-balancers"))
        self.logger = logger
    }

    static let label = "topsail"

    public func createServerGroup(_ spec: ServerGroupSpec, key: String) async throws(CloudError) -> ServerGroupState {
        if let problem = spec.problem { throw CloudError(problem) }
        try await converge(spec, key: key)
        return try await settled(spec.name, region: spec.region, capacity: spec.capacity, fallbackImage: spec.image)
    }

    public func resizeServerGroup(_ name: ServerGroupName, region: String, capacity: Capacity, key: String) async throws(CloudError) -> ServerGroupState {
        if let problem = capacity.problem { throw CloudError(problem) }
        var template = try record(of: name)
        if template == nil, let any = try await containers(of: name).first {
            template = ServerGroupSpec(name: name, region: region, image: any.image, capacity: capacity, port: any.port, loadBalancers: any.loadBalancers)
        }
        guard var spec = template else { throw CloudError("there is no server group \(name) in \(account)/\(region): create it first") }
        spec.capacity = capacity
        try await converge(spec, key: key)
        return try await settled(name, region: region, capacity: capacity, fallbackImage: spec.image)
    }

    public func destroyServerGroup(_ name: ServerGroupName, region: String, key: String) async throws(CloudError) {
        let members = try await containers(of: name)
        for balancer in Set(members.flatMap(\.loadBalancers)) where haproxy.running(balancer) {
            try haproxy.converge(balancer, prefix: "\(name)-i", wanted: [:])
        }
        let ids = members.map(\.id)
        if !ids.isEmpty { try await podman(["rm", "--force", "--time", "2"] + ids) }
        try? FileManager.default.removeItem(at: disabledMarker(name))
        try? FileManager.default.removeItem(at: recordFile(name))
    }

    public func terminateInstances(_ ids: [String], key: String) async throws(CloudError) {
        guard !ids.isEmpty else { return }
        // Only this account's containers: an id from elsewhere is not Topsail's to remove.
        let ours = try await list(filters: ["label=\(Self.label).account=\(account)"])
        let chosen = ours.filter { container in ids.contains { !$0.isEmpty && (container.id.hasPrefix($0) || $0.hasPrefix(container.id)) } }
        guard !chosen.isEmpty else { return }
        // Out of rotation first, so no request is sent to an instance going away.
        for container in chosen {
            for balancer in container.loadBalancers where haproxy.running(balancer) {
                try? haproxy.setState(balancer, server: "\(container.serverGroup)-i\(container.slot)", state: "maint")
            }
        }
        try await podman(["rm", "--force", "--time", "2"] + chosen.map(\.id))
    }

    public func serverGroups(of application: String) async throws(CloudError) -> [ServerGroupState] {
        let all = try await list(filters: ["label=\(Self.label).account=\(account)", "label=\(Self.label).application=\(application)"])
        var groups: [String: [Container]] = [:]
        for container in all { groups[container.serverGroup, default: []].append(container) }
        // A server group scaled to nothing still exists, as an auto-scaling group of 0 does.
        for recorded in try records(of: application) where groups[recorded.name.description] == nil { groups[recorded.name.description] = [] }
        var states: [ServerGroupState] = []
        for key in groups.keys.sorted() {
            guard let name = ServerGroupName(parsing: key), let members = groups[key] else { continue }
            let recorded = try record(of: name)
            let desired = recorded?.capacity.desired ?? members.first?.desired ?? members.count
            let capacity = recorded?.capacity ?? Capacity(min: members.first?.minimum ?? 0, max: members.first?.maximum ?? desired, desired: desired)
            states.append(try describe(name, region: recorded?.region ?? members.first?.region ?? "local", capacity: capacity, members: members,
                                       fallbackImage: recorded?.image ?? ""))
        }
        return states
    }

    public func upsertLoadBalancer(_ name: String, port: Int, healthCheck: String, securityGroups: [String], key: String) async throws(CloudError) {
        for group in securityGroups { if let problem = Self.problem(securityGroup: group) { throw CloudError(problem) } }
        let spec = LoadBalancerState(name: name, region: "local", port: port, healthCheck: healthCheck, securityGroups: securityGroups, servers: [])
        try await haproxy.upsert(name: name, port: port, healthCheck: healthCheck, ingress: try ingress(for: spec))
        try write(spec, to: haproxy.folder(name).appendingPathComponent("spec.json"))
        logger.info("load balancer up", metadata: ["account": "\(account)", "load-balancer": "\(name)", "port": "\(port)", "directory": "\(haproxy.directory.path)"])
        // Its server groups' instances come back after a restart of the process.
        let all = try await list(filters: ["label=\(Self.label).account=\(account)"]).filter { $0.loadBalancers.contains(name) }
        var byGroup: [String: [Container]] = [:]
        for container in all { byGroup[container.serverGroup, default: []].append(container) }
        for (group, members) in byGroup {
            guard let groupName = ServerGroupName(parsing: group) else { continue }
            _ = try sync(groupName, members: members)
        }
    }

    public func deleteLoadBalancer(_ name: String, key: String) async throws(CloudError) {
        try await haproxy.delete(name: name)
    }

    public func setServerGroupEnabled(_ name: ServerGroupName, region: String, enabled: Bool, percentage: Int, key: String) async throws(CloudError) {
        guard (0...100).contains(percentage) else { throw CloudError("a percentage is 0–100, not \(percentage)") }
        let members = try await containers(of: name)
        guard !members.isEmpty else { throw CloudError("server group \(name) in \(account)/\(region) has no instances") }
        let disabled = enabled ? 0 : percentage
        do {
            try FileManager.default.createDirectory(at: disabledMarker(name).deletingLastPathComponent(), withIntermediateDirectories: true)
            if disabled == 0 {
                try? FileManager.default.removeItem(at: disabledMarker(name))
            } else {
                try String(disabled).write(to: disabledMarker(name), atomically: true, encoding: .utf8)
            }
        } catch {
            throw CloudError("cannot record server group \(name) as \(enabled ? "enabled" : "disabled"): \(error)")
        }
        // Disabling drains: in-flight requests finish, new ones go elsewhere.
        _ = try sync(name, members: members)
    }

    public func upsertSecurityGroup(_ name: String, rules: [IngressRule], key: String) async throws(CloudError) {
        if let problem = Self.problem(securityGroup: name) { throw CloudError(problem) }
        for rule in rules { if let problem = rule.problem { throw CloudError(problem) } }
        try write(SecurityGroupState(name: name, region: "local", rules: rules), to: securityGroupFile(name))
        try enforceSecurityGroups()
    }

    public func deleteSecurityGroup(_ name: String, key: String) async throws(CloudError) {
        if let problem = Self.problem(securityGroup: name) { throw CloudError(problem) }
        let users = try loadBalancerSpecs().filter { $0.securityGroups.contains(name) }.map(\.name)
        guard users.isEmpty else { throw CloudError("security group \(name) is used by load balancer \(users.joined(separator: ", ")): take it off them first") }
        try? FileManager.default.removeItem(at: securityGroupFile(name))
    }

    public func loadBalancers() async throws(CloudError) -> [LoadBalancerState] {
        var states: [LoadBalancerState] = []
        for var spec in try loadBalancerSpecs() {
            let servers = haproxy.running(spec.name) ? (try? haproxy.servers(of: spec.name)) ?? [] : []
            spec.servers = servers.map { server in
                LoadBalancerState.Server(name: server.name, address: server.address, health: Self.health(server).rawValue, enabled: server.isReady)
            }
            states.append(spec)
        }
        return states
    }

    public func securityGroups() async throws(CloudError) -> [SecurityGroupState] {
        let folder = root.appendingPathComponent("security-groups")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return files.sorted().filter { $0.hasSuffix(".json") }.compactMap { file in
            try? JSONDecoder().decode(SecurityGroupState.self, from: Data(contentsOf: folder.appendingPathComponent(file)))
        }
    }

    // MARK: - Converging

    /// Launches the missing slots below `desired` (and relaunches slots whose container stopped),
    /// and removes the slots at or above it.
    func converge(_ spec: ServerGroupSpec, key: String) async throws(CloudError) {
        try save(spec)
        let existing = try await containers(of: spec.name)
        var stale: [Container] = []
        var present: Set<Int> = []
        for container in existing {
            if container.slot >= spec.capacity.desired || !container.running { stale.append(container) } else { present.insert(container.slot) }
        }
        for balancer in spec.loadBalancers {
            guard haproxy.running(balancer) else { throw CloudError("there is no load balancer \(balancer) in account \(account): upsert it first") }
        }
        if !stale.isEmpty {
            // Out of rotation before they go.
            for container in stale {
                for balancer in container.loadBalancers where haproxy.running(balancer) {
                    try? haproxy.setState(balancer, server: "\(container.serverGroup)-i\(container.slot)", state: "maint")
                }
            }
            try await podman(["rm", "--force", "--time", "2"] + stale.map(\.id))
        }
        for slot in 0..<spec.capacity.desired where !present.contains(slot) {
            var arguments = [
                "--runtime", "runc", "run", "--detach", "--name", containerName(spec.name, slot: slot),
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

    /// The server group after a change: its instances in its load balancers, waiting (up to 5 s)
    /// for their first health checks to pass so the answer says which are Up.
    func settled(_ name: ServerGroupName, region: String, capacity: Capacity, fallbackImage: String) async throws(CloudError) -> ServerGroupState {
        var members = try await containers(of: name)
        var state = try describe(name, region: region, capacity: capacity, members: members, fallbackImage: fallbackImage)
        let deadline = ContinuousClock.now + .seconds(5)
        while !members.flatMap(\.loadBalancers).isEmpty, state.instances.contains(where: { $0.health != .up }), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(200))
            members = try await containers(of: name)
            state = try describe(name, region: region, capacity: capacity, members: members, fallbackImage: fallbackImage)
        }
        return state
    }

    /// The server group as it is, after bringing its load balancers in line: its running
    /// instances are their servers; a server joins the rotation once a health check passed,
    /// unless its server group (or that share of it) is disabled.
    func describe(_ name: ServerGroupName, region: String, capacity: Capacity, members: [Container], fallbackImage: String) throws(CloudError) -> ServerGroupState {
        let servers = try sync(name, members: members)
        let percentage = disabledPercentage(name)
        let instances = members.sorted { $0.slot < $1.slot }.map { member -> InstanceState in
            let health: InstanceHealth
            if !member.running {
                health = .down
            } else if member.loadBalancers.isEmpty {
                health = .up
            } else if let server = servers["\(name)-i\(member.slot)"] {
                health = Self.health(server)
            } else {
                health = .starting
            }
            return InstanceState(id: member.id, slot: member.slot, health: health, address: member.address, running: member.running)
        }
        return ServerGroupState(name: name, region: region, image: members.first?.image ?? fallbackImage, capacity: capacity, instances: instances,
                                disabled: percentage >= 100, loadBalancers: Array(Set(members.flatMap(\.loadBalancers))).sorted())
    }
}
