import EventLog
import Foundation
import Logging
import Processes

/// The podman command line, and the containers it lists.
extension PodmanProvider {
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
