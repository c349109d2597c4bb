import EventLog
import Foundation
import Logging
import Processes

/// What the provider keeps on disk of its server groups: each one's last spec, and which are
/// disabled.
extension PodmanProvider {
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
}
