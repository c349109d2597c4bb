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

    // MARK: - Security groups at the load balancers' frontends

    static func problem(securityGroup name: String) -> String? {
        HAProxy.problem(name: name).map { _ in "a security group's name is letters, digits, '-' and '_' (1–64), not '\(name)'" }
    }

    func securityGroupFile(_ name: String) -> URL { root.appendingPathComponent("security-groups").appendingPathComponent("\(name).json") }

    func loadBalancerSpecs() throws(CloudError) -> [LoadBalancerState] {
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: haproxy.directory.path)) ?? []
        return folders.sorted().compactMap { folder in
            try? JSONDecoder().decode(LoadBalancerState.self, from: Data(contentsOf: haproxy.folder(folder).appendingPathComponent("spec.json")))
        }
    }

    /// The sources a load balancer's frontend accepts: those its security groups' rules allow on
    /// its port; nil (anywhere) when it has none.
    func ingress(for balancer: LoadBalancerState) throws(CloudError) -> [String]? {
        guard !balancer.securityGroups.isEmpty else { return nil }
        var cidrs: [String] = []
        for group in balancer.securityGroups {
            guard let data = try? Data(contentsOf: securityGroupFile(group)), let state = try? JSONDecoder().decode(SecurityGroupState.self, from: data) else {
                throw CloudError("there is no security group \(group) in account \(account): upsert it first")
            }
            for rule in state.rules where (rule.startPort...rule.endPort).contains(balancer.port) && !cidrs.contains(rule.cidr) { cidrs.append(rule.cidr) }
        }
        return cidrs
    }

    /// Every running load balancer takes its security groups' rules as they now are.
    func enforceSecurityGroups() throws(CloudError) {
        for balancer in try loadBalancerSpecs() where !balancer.securityGroups.isEmpty && haproxy.running(balancer.name) {
            try haproxy.setIngress(balancer.name, cidrs: try ingress(for: balancer))
        }
    }

    func write(_ value: some Encodable, to file: URL) throws(CloudError) {
        do {
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try JSONEncoder().encode(value).write(to: file, options: .atomic)
        } catch {
            throw CloudError("cannot write \(file.path): \(error)")
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

    static func health(_ server: HAProxy.Server) -> InstanceHealth {
        if server.isHealthy { return server.isReady ? .up : .outOfService }
        return server.hasBeenChecked ? .down : .starting
    }

    /// Makes the server group's servers in each of its load balancers its running instances, each
    /// ready or draining as it should be; answers the servers by name (a server in several load
    /// balancers: the least healthy).
    func sync(_ name: ServerGroupName, members: [Container]) throws(CloudError) -> [String: HAProxy.Server] {
        let percentage = disabledPercentage(name)
        let running = members.filter(\.running).sorted { $0.slot < $1.slot }
        // The lowest slots are the disabled share.
        let disabledSlots = Set(running.prefix((running.count * percentage + 99) / 100).map(\.slot))
        var seen: [String: HAProxy.Server] = [:]
        for balancer in Set(members.flatMap(\.loadBalancers)).sorted() where haproxy.running(balancer) {
            let wanted = Dictionary(uniqueKeysWithValues: running.compactMap { member in member.address.map { ("\(name)-i\(member.slot)", $0) } })
            try haproxy.converge(balancer, prefix: "\(name)-i", wanted: wanted)
            for server in try haproxy.servers(of: balancer) where server.name.hasPrefix("\(name)-i") {
                guard let slot = Int(server.name.dropFirst("\(name)-i".count)) else { continue }
                let ready = !disabledSlots.contains(slot) && (server.isReady || server.isHealthy)
                var now = server
                if ready && !server.isReady {
                    try haproxy.setState(balancer, server: server.name, state: "ready")
                    now.administrative = 0
                } else if !ready && server.isReady {
                    try haproxy.setState(balancer, server: server.name, state: "drain")
                    now.administrative = 8
                }
                if let earlier = seen[server.name], !earlier.isHealthy { continue }
                seen[server.name] = now
            }
        }
        return seen
    }

    /// Slot `slot`'s container: `<account>.<server group>-i<slot>` (container names are one
    /// namespace on the machine, shared by every account).
    public func containerName(_ name: ServerGroupName, slot: Int) -> String { "\(account).\(name)-i\(slot)" }

    /// What a server group was last asked to be (so one scaled to nothing, or whose containers were
    /// all removed, can be brought back).
    struct Record: Codable {
        var name: String
        var region: String
        var image: String
        var port: Int
        var min: Int
        var max: Int
        var desired: Int
        var loadBalancers: [String]
    }

    func recordFile(_ name: ServerGroupName) -> URL {
        root.appendingPathComponent("server-groups").appendingPathComponent("\(name).json")
    }

    func save(_ spec: ServerGroupSpec) throws(CloudError) {
        try write(Record(name: spec.name.description, region: spec.region, image: spec.image, port: spec.port, min: spec.capacity.min,
                         max: spec.capacity.max, desired: spec.capacity.desired, loadBalancers: spec.loadBalancers), to: recordFile(spec.name))
    }

    func record(of name: ServerGroupName) throws(CloudError) -> ServerGroupSpec? {
        guard let data = try? Data(contentsOf: recordFile(name)), let record = try? JSONDecoder().decode(Record.self, from: data) else { return nil }
        return ServerGroupSpec(name: name, region: record.region, image: record.image, capacity: Capacity(min: record.min, max: record.max, desired: record.desired),
                               port: record.port, loadBalancers: record.loadBalancers)
    }

    func records(of application: String) throws(CloudError) -> [ServerGroupSpec] {
        let folder = root.appendingPathComponent("server-groups")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        var found: [ServerGroupSpec] = []
        for file in files.sorted() where file.hasSuffix(".json") {
            guard let name = ServerGroupName(parsing: String(file.dropLast(5))), name.application == application, let spec = try record(of: name) else { continue }
            found.append(spec)
        }
        return found
    }

    func disabledMarker(_ name: ServerGroupName) -> URL {
        root.appendingPathComponent("server-groups").appendingPathComponent("\(name).disabled")
    }

    /// The share of the server group disabled (0–100).
    func disabledPercentage(_ name: ServerGroupName) -> Int {
        (try? String(contentsOf: disabledMarker(name), encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
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
        var environment: [String: String] = [:]
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
        try await Self.run(executable, arguments)
    }

    /// Runs podman and answers what it printed; a failure says what podman said.
    static func run(_ executable: String, _ arguments: [String]) async throws(CloudError) -> String {
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
