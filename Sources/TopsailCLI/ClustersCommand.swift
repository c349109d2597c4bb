import ArgumentParser
import CLISupport
import EventLog
import Foundation
import PostgresEventStore
import ReadModels

/// `topsail clusters`, `server-groups` and `load-balancers`: the cluster view, read through the
/// API (as the caller, only accounts it may READ) or from the database (as an operator); changes
/// go through the API as tasks, so they run as the caller and need WRITE on the account.
struct ClustersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clusters", abstract: "List an application's clusters, by account.", subcommands: [ListClustersCommand.self], defaultSubcommand: ListClustersCommand.self)
}

struct ListClustersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List an application's clusters and their server groups.")

    @OptionGroup var options: CommonOptions
    @OptionGroup var api: APIClientOptions
    @Argument(help: "The application.") var application: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let groups = try await ClusterViews.serverGroups(of: application, options: options, api: api)
        if json { return ClusterViews.print(groups) }
        var clusters: [String: [JSONValue]] = [:]
        for group in groups.arrayValue ?? [] {
            clusters["\(group["account"]?.stringValue ?? "-")\t\(group["cluster"]?.stringValue ?? "-")", default: []].append(group)
        }
        if clusters.isEmpty { print("application \(application) has no server groups") }
        for key in clusters.keys.sorted() {
            let members = clusters[key] ?? []
            print("\(key)\t\(members.compactMap { $0["name"]?.stringValue }.joined(separator: " "))")
        }
    }
}

struct ServerGroupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server-groups", abstract: "List server groups; resize, enable, disable or destroy one (through the API, as a task).",
        subcommands: [ListServerGroupsCommand.self, ServerGroupActionCommand.self], defaultSubcommand: ListServerGroupsCommand.self)
}

struct ListServerGroupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List an application's server groups with capacity, state and instances.")

    @OptionGroup var options: CommonOptions
    @OptionGroup var api: APIClientOptions
    @Argument(help: "The application.") var application: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let groups = try await ClusterViews.serverGroups(of: application, options: options, api: api)
        if json { return ClusterViews.print(groups) }
        if groups.arrayValue?.isEmpty ?? true { print("application \(application) has no server groups") }
        for group in groups.arrayValue ?? [] {
            let instances = group["instances"]?.arrayValue ?? []
            let up = instances.filter { $0["health"] == "Up" }.count
            print([group["account"]?.stringValue ?? "-", group["name"]?.stringValue ?? "-", (group["disabled"]?.boolValue ?? false) ? "disabled" : "enabled",
                   "desired \(group["capacity"]?["desired"]?.intValue ?? 0)", "\(up)/\(instances.count) up", group["image"]?.stringValue ?? "-"].joined(separator: "\t"))
        }
    }
}

struct ServerGroupActionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "act", abstract: "Resize, enable, disable or destroy a server group: a task through the API, as the caller (WRITE on the account).",
        discussion: "Examples: topsail server-groups act resize prod shop-web-v003 --desired 4; topsail server-groups act disable prod shop-web-v002. Waits for the task and prints its outcome.")

    enum Action: String, ExpressibleByArgument, CaseIterable {
        case resize, enable, disable, destroy
    }

    @OptionGroup var api: APIClientOptions
    @Argument(help: "resize, enable, disable or destroy.") var action: Action
    @Argument(help: "The account.") var account: String
    @Argument(help: "The server group, as app-stack-v000.") var serverGroup: String
    @Option(help: "The region.") var region: String = "local"
    @Option(help: "resize: the desired instance count (min and max follow unless given).") var desired: Int?
    @Option(help: "resize: the minimum.") var min: Int?
    @Option(help: "resize: the maximum.") var max: Int?
    @Option(help: "Seconds to wait for the task.") var timeout: Int = 300

    func validate() throws {
        if action == .resize, desired == nil { throw ValidationError("resize needs --desired") }
    }

    func run() async throws {
        guard let remote = try api.remote() else { throw CLIError("changing a server group goes through the API, as you: pass --api (or set TOPSAIL_API_URL) and a token") }
        let application = String(serverGroup.prefix { $0 != "-" })
        var job: [String: JSONValue] = [
            "type": .string("\(action == .resize ? "resize" : action.rawValue)ServerGroup"), "credentials": .string(account),
            "serverGroupName": .string(serverGroup), "region": .string(region),
        ]
        if let desired {
            job["capacity"] = ["min": .number(Double(min ?? desired)), "max": .number(Double(max ?? desired)), "desired": .number(Double(desired))]
        }
        let started = try await remote.call(.POST, "/applications/\(RemoteAPI.escape(application))/tasks", body: [
            "description": .string("\(action.rawValue) \(serverGroup)"), "job": [.object(job)],
        ])
        guard let id = started["id"]?.stringValue else { throw CLIError("the API started no task") }
        FileHandle.standardError.write(Data("task \(id): \(action.rawValue) \(serverGroup)…\n".utf8))
        let deadline = Date().addingTimeInterval(TimeInterval(timeout))
        while Date() < deadline {
            let task = try await remote.call(.GET, "/tasks/\(RemoteAPI.escape(id))")
            let status = task["status"]?.stringValue ?? "-"
            if ["SUCCEEDED", "TERMINAL", "CANCELED", "STOPPED", "FAILED_CONTINUE"].contains(status) {
                let error = task["stages"]?.arrayValue?.compactMap { $0["outputs"]?["error"]?.stringValue ?? $0["context"]?["error"]?.stringValue }.first
                guard status == "SUCCEEDED" else { throw CLIError("task \(id) ended \(status)\(error.map { ": \($0)" } ?? "") (topsail executions show \(id))") }
                print("task \(id) SUCCEEDED: \(action.rawValue) \(serverGroup)")
                return
            }
            try await Task.sleep(for: .seconds(1))
        }
        throw CLIError("task \(id) still runs after \(timeout) s: topsail executions show \(id)")
    }
}

struct LoadBalancersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load-balancers", abstract: "List an application's load balancers and the server groups behind them (through the API).")

    @OptionGroup var api: APIClientOptions
    @Argument(help: "The application.") var application: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        guard let remote = try api.remote() else { throw CLIError("load balancers are read through the API: pass --api (or set TOPSAIL_API_URL) and a token") }
        let balancers = try await remote.call(.GET, "/applications/\(RemoteAPI.escape(application))/loadBalancers")
        if json { return ClusterViews.print(balancers) }
        if balancers.arrayValue?.isEmpty ?? true { print("application \(application) has no load balancers") }
        for balancer in balancers.arrayValue ?? [] {
            let members = (balancer["serverGroups"]?.arrayValue ?? []).map { "\($0["name"]?.stringValue ?? "-")\(($0["isDisabled"]?.boolValue ?? false) ? " (disabled)" : "")" }
            print("\(balancer["account"]?.stringValue ?? "-")\t\(balancer["name"]?.stringValue ?? "-")\tport \(balancer["port"]?.intValue ?? 0)\t\(members.joined(separator: ", "))")
        }
    }
}

enum ClusterViews {
    /// The application's server groups: through the API, or from the cluster view in the database.
    static func serverGroups(of application: String, options: CommonOptions, api: APIClientOptions) async throws -> JSONValue {
        if let remote = try api.remote() { return try await remote.call(.GET, "/applications/\(RemoteAPI.escape(application))/serverGroups") }
        let logger = options.logger("topsail.clusters")
        return try await withDatabase(try options.database(), logger: logger) { client in
            let groups = try await ClusterReadModel(client: client, logger: logger).serverGroups(of: application)
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            return try JSONDecoder().decode(JSONValue.self, from: try encoder.encode(groups))
        }
    }

    static func print(_ value: JSONValue) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        Swift.print(String(decoding: (try? encoder.encode(value)) ?? Data(), as: UTF8.self))
    }
}
