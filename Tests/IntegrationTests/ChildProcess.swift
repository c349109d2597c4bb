import Foundation
import Processes
import Synchronization

/// A process started by a test (an engine, a broker), killed when the test is done with it.
///
/// Started with posix_spawn and reaped here with waitpid, its output in a file: Foundation's
/// `Process` reaps through a SIGCHLD dispatch source that has lagged for minutes while the test
/// process was busy, and reading `terminationStatus` before it caught up traps.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: the exit status is guarded by `lock`; the rest is immutable.
    let pid: Int32
    private let outputPath: String
    private let lock = NSLock()
    private var status: Int32?

    init(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws {
        outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("topsail-child-\(UUID().uuidString).log").path
        pid = try UnmaskedProcess.spawn(executable.path, arguments, environment: TestEnvironment.processEnvironment(environment), output: outputPath)
    }

    /// Everything the process wrote to stdout and stderr so far.
    var text: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// The exit code once the process has exited (128 + the signal if one killed it), else nil.
    var exitStatus: Int32? {
        lock.withLock {
            if status == nil { status = UnmaskedProcess.exited(pid) }
            return status
        }
    }

    var isRunning: Bool { exitStatus == nil }

    /// SIGKILL: no chance to clean up, as in a crash. Returns once the process is gone.
    func killHard() {
        guard isRunning else { return }
        kill(pid, SIGKILL)
        while isRunning { usleep(5_000) }
    }

    /// SIGTERM now, SIGKILL if it still runs after `grace`; returns at once. Waiting here would
    /// hold one of the test process's few cooperative threads for the whole shutdown and starve
    /// every other test (which then time out); `stopped(grace:)` waits without blocking.
    func terminate(grace: Duration = .seconds(10)) {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        let thread = Thread { [self] in
            let deadline = ContinuousClock.now + grace
            while isRunning && ContinuousClock.now < deadline { usleep(20_000) }
            killHard()
        }
        thread.start()
    }

    /// SIGTERM, then waits (suspending, not blocking) up to `grace` for the process to exit, then
    /// SIGKILL. Returns whether it exited by itself.
    @discardableResult
    func stopped(grace: Duration = .seconds(10)) async -> Bool {
        guard isRunning else { return true }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        guard isRunning else { return true }
        kill(pid, SIGKILL)
        while isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        return false
    }

    deinit {
        if status == nil && UnmaskedProcess.exited(pid) == nil {
            kill(pid, SIGKILL)
            var ignored: Int32 = 0
            while waitpid(pid, &ignored, 0) < 0 && errno == EINTR {}
        }
        try? FileManager.default.removeItem(atPath: outputPath)
    }
}

/// A private broker on a free port, so a test may stop and start it without disturbing others.
final class PrivateBroker: @unchecked Sendable {
    let port: Int
    private(set) var process: ChildProcess?
    private(set) var clusterID = ""

    init() throws {
        port = try Self.freePort()
        try start()
    }

    var address: String { "127.0.0.1:\(port)" }
    /// The broker's process id while it runs.
    var pid: Int32? { process?.pid }

    func start() throws {
        clusterID = "test-\(UUID().uuidString.prefix(8))"
        process = try ChildProcess(TestEnvironment.brokerExecutable(), [
            "broker", "--cluster-id", clusterID,
            "--listener-url", "tcp://127.0.0.1:\(port)", "--advertised-listener-url", "tcp://127.0.0.1:\(port)",
        ])
        for _ in 0..<100 {
            if Self.answers(port: port) { return }
            usleep(50_000)
        }
        throw SetupError("the private broker did not start on port \(port): \(process?.text ?? "")")
    }

    func stop() {
        process?.killHard()
        process = nil
    }

    deinit { process?.killHard() }

    static func answers(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// A port nothing listens on, for a server a test starts. Chosen below the kernel's range of
    /// ephemeral ports (ip_local_port_range), which outgoing connections take their source ports
    /// from: a port handed out from that range could become some connection's source port before
    /// the server binds it ("Address already in use"). Never the same port twice in a run.
    static func freePort() throws -> Int {
        let (low, _) = ephemeralRange
        let candidates = 20_000..<min(low, 32_000)
        for _ in 0..<200 {
            let port = Int.random(in: candidates)
            guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
            if bindable(port) { return port }
        }
        throw SetupError("cannot find a free port in \(candidates)")
    }

    private static let handedOut = Mutex<Set<Int>>([19092])

    /// The kernel's ephemeral port range (32768–60999 unless configured).
    static let ephemeralRange: (Int, Int) = {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        return parts.count == 2 ? (parts[0], parts[1]) : (32768, 60999)
    }()

    private static func bindable(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}
