import EventLog
import Foundation
import Logging
import Processes

/// The provider's side of its load balancers: security groups at their frontends, and each
/// server group's instances as servers, ready or draining.
extension PodmanProvider {
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
}
