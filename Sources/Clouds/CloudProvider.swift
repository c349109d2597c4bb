import EventLog
import Foundation

/// How many instances a server group should run (an auto-scaling group's bounds and target).
public struct Capacity: Sendable, Hashable, Codable {
    public var min: Int
    public var max: Int
    public var desired: Int

    public init(min: Int, max: Int, desired: Int) {
        self.min = min
        self.max = max
        self.desired = desired
    }

    /// What is wrong with it, if anything.
    public var problem: String? {
        guard min >= 0, max >= 0, desired >= 0 else { return "capacity may not be negative" }
        guard min <= desired, desired <= max else { return "capacity must hold min ≤ desired ≤ max (min \(min), desired \(desired), max \(max))" }
        guard max <= 100 else { return "at most 100 instances in one server group" }
        return nil
    }
}

/// What to launch: the server group's name, its image and its instances' shape.
public struct ServerGroupSpec: Sendable, Hashable {
    public var name: ServerGroupName
    public var region: String
    public var image: String
    public var capacity: Capacity
    /// The port the image's service listens on inside an instance.
    public var port: Int
    public var environment: [String: String]
    /// The load balancers its instances serve behind.
    public var loadBalancers: [String]

    public init(
        name: ServerGroupName, region: String, image: String, capacity: Capacity, port: Int = 8080, environment: [String: String] = [:],
        loadBalancers: [String] = []
    ) {
        self.name = name
        self.region = region
        self.image = image
        self.capacity = capacity
        self.port = port
        self.environment = environment
        self.loadBalancers = loadBalancers
    }

    /// Whether `image` can be an image reference on a command line: printable, no spaces, not an option.
    public static func validImage(_ image: String) -> Bool {
        !image.isEmpty && image.count <= 255 && !image.hasPrefix("-") && image.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 0x20 && $0.value != 0x7F }
    }

    /// What is wrong with it, if anything. Every part reaches a podman command line, labels or a
    /// load balancer's runtime commands, so each is checked here, whoever asks.
    public var problem: String? {
        if let problem = name.problem ?? capacity.problem { return problem }
        guard name.sequence != nil else { return "a server group's name needs its sequence (\(name)-v000)" }
        guard Self.validImage(image) else {
            return "an image is a reference such as localhost/shop:1.2 (printable, no spaces, not starting with '-'), not '\(image)'"
        }
        guard (1...65_535).contains(port) else { return "a container port is 1–65535, not \(port)" }
        for balancer in loadBalancers where HAProxy.problem(name: balancer) != nil { return HAProxy.problem(name: balancer) }
        for key in environment.keys where key.isEmpty || key.contains("=") { return "an environment variable's name may not be empty or hold '='" }
        return nil
    }
}

/// An instance's health as Spinnaker shows it.
public enum InstanceHealth: String, Sendable, Codable {
    case up = "Up", down = "Down", starting = "Starting", outOfService = "OutOfService", unknown = "Unknown"
}

public struct InstanceState: Sendable, Hashable {
    public var id: String
    /// Its place in the server group (0 ..< desired): what makes a launch idempotent.
    public var slot: Int
    public var health: InstanceHealth
    /// Where it serves, `host:port`, when it does.
    public var address: String?
    /// Whether its process runs at all (an instance can run and fail its health checks).
    public var running: Bool = true
}

public struct ServerGroupState: Sendable, Hashable {
    public var name: ServerGroupName
    public var region: String
    public var image: String
    public var capacity: Capacity
    public var instances: [InstanceState]
    /// Out of its load balancers' rotation (all of it; a rolling deploy disables part).
    public var disabled: Bool = false
    public var loadBalancers: [String] = []

    /// How many of its instances are Up.
    public var upCount: Int { instances.filter { $0.health == .up }.count }
}

/// An ingress rule of a security group: connections from `cidr` to ports `startPort…endPort`.
public struct IngressRule: Sendable, Hashable, Codable {
    public var cidr: String
    public var startPort: Int
    public var endPort: Int

    public init(cidr: String, startPort: Int, endPort: Int) {
        self.cidr = cidr
        self.startPort = startPort
        self.endPort = endPort
    }

    public var problem: String? {
        if let problem = HAProxy.problem(cidr: cidr) { return problem }
        guard (1...65_535).contains(startPort), (startPort...65_535).contains(endPort) else { return "an ingress rule's ports are 1–65535, start ≤ end (\(startPort)–\(endPort))" }
        return nil
    }
}

public struct SecurityGroupState: Sendable, Hashable, Codable {
    public var name: String
    public var region: String
    public var rules: [IngressRule]
}

public struct LoadBalancerState: Sendable, Hashable, Codable {
    public struct Server: Sendable, Hashable, Codable {
        public var name: String
        public var address: String
        public var health: String
        public var enabled: Bool
    }

    public var name: String
    public var region: String
    public var port: Int
    public var healthCheck: String
    public var securityGroups: [String]
    public var servers: [Server]
}

/// A cloud operation failed, in words; `retriable` when trying again may help.
public struct CloudError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public let retriable: Bool

    public init(_ description: String, retriable: Bool = false) {
        self.description = description
        self.retriable = retriable
    }
}

/// The provider port: what Topsail asks of a cloud (decision 0017). Every operation that changes
/// something takes an idempotency key and converges to what it asks — run again with the same
/// request, it launches and removes nothing more — so a redelivered operation is harmless.
/// Load balancers and security groups, enable and disable come with the HAProxy side.
public protocol CloudProvider: Sendable {
    /// `podman`, `kubernetes`, `aws` …
    var type: String { get }

    /// Creates the server group with `capacity.desired` instances; an existing one of that name
    /// is converged to the request instead.
    func createServerGroup(_ spec: ServerGroupSpec, key: String) async throws(CloudError) -> ServerGroupState

    /// Converges the server group's instances to `capacity.desired`.
    func resizeServerGroup(_ name: ServerGroupName, region: String, capacity: Capacity, key: String) async throws(CloudError) -> ServerGroupState

    /// Removes every instance of the server group; nothing left is not an error.
    func destroyServerGroup(_ name: ServerGroupName, region: String, key: String) async throws(CloudError)

    /// Terminates instances; a server group with instances missing gets them back at its next
    /// convergence (as an auto-scaling group replaces them).
    func terminateInstances(_ ids: [String], key: String) async throws(CloudError)

    /// What runs now, for the application.
    func serverGroups(of application: String) async throws(CloudError) -> [ServerGroupState]

    /// Creates the load balancer, or changes it to this (its port, its health check, the security
    /// groups whose ingress rules its frontend enforces; none: open).
    func upsertLoadBalancer(_ name: String, port: Int, healthCheck: String, securityGroups: [String], key: String) async throws(CloudError)

    func deleteLoadBalancer(_ name: String, key: String) async throws(CloudError)

    /// Puts the server group's instances in (enabled) or out of (disabled, after draining) its
    /// load balancers' rotation; `percentage` below 100 disables only that share of its
    /// instances (the lowest slots first), as a rolling deploy does.
    func setServerGroupEnabled(_ name: ServerGroupName, region: String, enabled: Bool, percentage: Int, key: String) async throws(CloudError)

    /// Creates the security group or replaces its rules; the load balancers using it enforce them.
    func upsertSecurityGroup(_ name: String, rules: [IngressRule], key: String) async throws(CloudError)

    func deleteSecurityGroup(_ name: String, key: String) async throws(CloudError)

    func loadBalancers() async throws(CloudError) -> [LoadBalancerState]

    func securityGroups() async throws(CloudError) -> [SecurityGroupState]
}

extension CloudProvider {
    /// One server group as it is now; nil when nothing of it runs.
    public func serverGroup(_ name: ServerGroupName, region: String) async throws(CloudError) -> ServerGroupState? {
        try await serverGroups(of: name.application).first { $0.name == name && $0.region == region }
    }
}
