import Foundation
import Processes
#if canImport(Glibc)
import Glibc
#endif

/// Load balancers as HAProxy processes (decision 0017): one per load balancer, its frontend on
/// 127.0.0.1:`port`, one backend whose servers are added, enabled, drained and removed through
/// the runtime API (the admin socket) without a reload, each health-checked over HTTP. A process
/// outlives the engine that started it (traffic keeps flowing while Topsail restarts) and is found
/// again by its pid file.
public struct HAProxy: Sendable {
    public struct Server: Sendable, Hashable {
        public var name: String
        public var address: String
        /// HAProxy's operational state: 0 stopped (down), 2 running (up), 1 starting, 3 stopping.
        public var operational: Int
        /// Its administrative state: 0 ready; bits for maintenance (1, 2, 4…) and drain (8, 16…).
        public var administrative: Int
        /// Its last health check: 0 none yet, 1 neutral, 2 failed, 3 passed, 4 passed with conditions.
        public var checkResult: Int

        public var isUp: Bool { operational == 2 }
        public var isReady: Bool { administrative == 0 }
        /// Up and seen to pass a health check. HAProxy counts a server added with checks as up
        /// before its first check, so that alone does not make it healthy.
        public var isHealthy: Bool { operational == 2 && (checkResult == 3 || checkResult == 4) }
        public var hasBeenChecked: Bool { checkResult != 0 }
    }

    let directory: URL
    let executable: String

    /// `directory` holds one folder per load balancer (its configuration, pid file and socket).
    public init(directory: URL, executable: String = "/usr/sbin/haproxy") {
        self.directory = directory
        self.executable = executable
    }

    /// What is wrong with a load balancer's name, if anything: it names a folder and goes into
    /// runtime commands, so only letters, digits, '-' and '_'.
    public static func problem(name: String) -> String? {
        guard !name.isEmpty, name.count <= 64, !name.hasPrefix("-"), name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            return "a load balancer's name is letters, digits, '-' and '_' (1–64), not '\(name)'"
        }
        return nil
    }

    /// What is wrong with a health check's path, if anything: it goes into the configuration,
    /// so a path of printable characters without spaces, starting with '/'.
    public static func problem(healthCheck: String) -> String? {
        guard healthCheck.hasPrefix("/"), healthCheck.count <= 200,
              healthCheck.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value != 0x7F && $0 != "\\" && $0 != "#" }) else {
            return "a health check is a path such as /health (printable, no spaces, '#' or '\\'), not '\(healthCheck)'"
        }
        return nil
    }

    func folder(_ name: String) -> URL { directory.appendingPathComponent(name) }
    func socket(_ name: String) -> String { folder(name).appendingPathComponent("admin.sock").path }

    /// What is wrong with an ingress rule's source, if anything: an IPv4 CIDR such as 10.0.0.0/8
    /// (it reaches an ACL file and runtime commands).
    public static func problem(cidr: String) -> String? {
        let parts = cidr.split(separator: "/", omittingEmptySubsequences: false)
        let octets = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, octets.count == 4, octets.allSatisfy({ $0.count <= 3 && $0.allSatisfy(\.isASCII) && UInt8($0) != nil }),
              parts.count == 1 || (parts[1].count <= 2 && parts[1].allSatisfy(\.isNumber) && (0...32).contains(Int(parts[1]) ?? -1)) else {
            return "an ingress source is an IPv4 CIDR such as 10.0.0.0/8, not '\(cidr)'"
        }
        return nil
    }

    /// Starts the load balancer, or leaves it running when its configuration is the same. Its
    /// frontend accepts connections only from `ingress` (IPv4 CIDRs; nil: from anywhere), which
    /// ``setIngress(_:cidrs:)`` changes without a restart.
    public func upsert(name: String, port: Int, healthCheck: String, ingress: [String]? = nil) async throws(CloudError) {
        for cidr in ingress ?? [] { if let problem = Self.problem(cidr: cidr) { throw CloudError(problem) } }
        if let problem = Self.problem(name: name) ?? Self.problem(healthCheck: healthCheck) { throw CloudError(problem) }
        guard (1024...65_535).contains(port) else { throw CloudError("a load balancer's port must be 1024–65535, not \(port)") }
        let folder = folder(name)
        let configuration = """
            global
                stats socket \(socket(name)) mode 600 level admin
                pidfile \(folder.appendingPathComponent("haproxy.pid").path)
            defaults
                mode http
                timeout connect 2s
                timeout client 30s
                timeout server 30s
                retries 2
                option redispatch
            frontend public
                bind 127.0.0.1:\(port)
                acl ingress src -f \(folder.appendingPathComponent("ingress.acl").path)
                tcp-request connection reject if !ingress
                http-request deny deny_status 403 if !ingress
                default_backend servers
            backend servers
                balance roundrobin
                option httpchk GET \(healthCheck)

            """
        let file = folder.appendingPathComponent("haproxy.cfg")
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let current = try? String(contentsOf: file, encoding: .utf8)
            if current == configuration, running(name) {
                try setIngress(name, cidrs: ingress)
                return
            }
            if running(name) { try await stop(name) }
            try configuration.write(to: file, atomically: true, encoding: .utf8)
            try Self.aclText(ingress).write(to: folder.appendingPathComponent("ingress.acl"), atomically: true, encoding: .utf8)
        } catch let error as CloudError {
            throw error
        } catch {
            throw CloudError("cannot write the configuration of load balancer \(name): \(error)")
        }
        let started: UnmaskedProcess.Finished
        do {
            started = try await UnmaskedProcess.run(executable, ["-f", file.path, "-D"], environment: [:])
        } catch {
            throw CloudError("cannot run \(executable): \(error) (ops/setup installs haproxy)")
        }
        guard started.status == 0 else { throw CloudError("haproxy did not start load balancer \(name): \(started.errors.prefix(300))", retriable: true) }
        for _ in 0..<50 where !running(name) { try? await Task.sleep(for: .milliseconds(50)) }
        guard running(name) else { throw CloudError("haproxy started load balancer \(name) but its admin socket does not answer", retriable: true) }
    }

    static func aclText(_ cidrs: [String]?) -> String {
        (cidrs ?? ["0.0.0.0/0"]).map { $0 + "\n" }.joined()
    }

    /// Replaces the sources the frontend accepts connections from, atomically (HAProxy's
    /// prepare/commit of an ACL version) and in the ACL file a restart reads.
    public func setIngress(_ name: String, cidrs: [String]?) throws(CloudError) {
        for cidr in cidrs ?? [] { if let problem = Self.problem(cidr: cidr) { throw CloudError(problem) } }
        let file = folder(name).appendingPathComponent("ingress.acl")
        if (try? String(contentsOf: file, encoding: .utf8)) == Self.aclText(cidrs) { return }
        let prepared = try command("prepare acl \(file.path)", on: name)
        guard let version = prepared.split(whereSeparator: { $0 == " " || $0 == "\n" }).last.flatMap({ Int($0) }) else {
            throw CloudError("load balancer \(name) refused a new ingress list: \(prepared.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        for cidr in cidrs ?? ["0.0.0.0/0"] { _ = try command("add acl @\(version) \(file.path) \(cidr)", on: name) }
        let committed = try command("commit acl @\(version) \(file.path)", on: name)
        guard committed.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw CloudError("load balancer \(name) did not take its ingress list: \(committed.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        do {
            try Self.aclText(cidrs).write(to: file, atomically: true, encoding: .utf8)
        } catch {
            throw CloudError("cannot write the ingress list of load balancer \(name): \(error)")
        }
    }

    /// Stops the load balancer's process and forgets it.
    public func delete(name: String) async throws(CloudError) {
        if let problem = Self.problem(name: name) { throw CloudError(problem) }
        if running(name) { try await stop(name) }
        try? FileManager.default.removeItem(at: folder(name))
    }

    private func stop(_ name: String) async throws(CloudError) {
        let pidFile = folder(name).appendingPathComponent("haproxy.pid")
        guard let text = try? String(contentsOf: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return }
        kill(pid, SIGTERM)
        for _ in 0..<50 where kill(pid, 0) == 0 { try? await Task.sleep(for: .milliseconds(50)) }
    }

    /// Whether the load balancer's admin socket answers.
    public func running(_ name: String) -> Bool {
        (try? command("show info", on: name).contains("Name: HAProxy")) ?? false
    }

    /// The backend's servers as HAProxy sees them now.
    public func servers(of name: String) throws(CloudError) -> [Server] {
        let text = try command("show servers state servers", on: name)
        return text.split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#") else { return nil }
            let fields = line.split(separator: " ")
            guard fields.count > 18, let operational = Int(fields[5]), let administrative = Int(fields[6]), let check = Int(fields[11]) else { return nil }
            return Server(name: String(fields[3]), address: "\(fields[4]):\(fields[18])", operational: operational, administrative: administrative, checkResult: check)
        }
    }

    /// Makes the servers named with `prefix` exactly `wanted` (name → address): adds the missing
    /// ones health-checked and draining — they take no traffic until ``setState(_:server:state:)``
    /// lets them in, after a check passed — and removes the others.
    public func converge(_ name: String, prefix: String, wanted: [String: String]) throws(CloudError) {
        let current = Dictionary(try servers(of: name).filter { $0.name.hasPrefix(prefix) }.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for (server, existing) in current where wanted[server] != existing.address {
            _ = try command("set server servers/\(server) state maint", on: name)
            _ = try command("del server servers/\(server)", on: name)
        }
        for (server, address) in wanted.sorted(by: { $0.key < $1.key }) where current[server]?.address != address {
            let added = try command("add server servers/\(server) \(address) check inter 500 rise 1 fall 2", on: name)
            guard added.contains("New server registered") else { throw CloudError("haproxy refused server \(server): \(added.trimmingCharacters(in: .whitespacesAndNewlines))") }
            _ = try command("enable health servers/\(server)", on: name)
            _ = try command("set server servers/\(server) state drain", on: name)
        }
    }

    /// Sets a server to `state`: ready, drain (no new connections, in-flight ones finish) or maint.
    public func setState(_ name: String, server: String, state: String) throws(CloudError) {
        _ = try command("set server servers/\(server) state \(state)", on: name)
    }

    /// One runtime API command on the load balancer's admin socket, and its answer.
    func command(_ line: String, on name: String) throws(CloudError) -> String {
        // Every way in ends here: no name outside the load balancers' folder, no second command.
        if let problem = Self.problem(name: name) { throw CloudError(problem) }
        guard !line.contains("\n"), !line.contains(";") else { throw CloudError("a runtime command is one line") }
        let path = socket(name)
        let descriptor = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw CloudError("cannot open a socket: \(String(cString: strerror(errno)))", retriable: true) }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw CloudError("the socket path \(path) is too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
            buffer[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw CloudError("load balancer \(name) does not answer on its admin socket", retriable: true) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request = Array((line + "\n").utf8)
        guard request.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, 0) }) == request.count else {
            throw CloudError("cannot send to load balancer \(name)", retriable: true)
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            answer += buffer[0..<count]
        }
        return String(decoding: answer, as: UTF8.self)
    }
}
