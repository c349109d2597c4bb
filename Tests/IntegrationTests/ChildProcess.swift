import Foundation

/// A process started by a test (a relay, a broker), killed when the test is done with it.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: Process is used from one test at a time; the output buffer is guarded by `lock`.
    let process = Process()
    private let lock = NSLock()
    private var output = Data()

    init(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = executable
        process.arguments = arguments
        process.environment = TestEnvironment.processEnvironment(environment)
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        // A blocking reader on a thread of its own, as the script runner does (Foundation's
        // readabilityHandler has crashed in libdispatch on Linux).
        let handle = pipe.fileHandleForReading
        let thread = Thread { [weak self] in
            while true {
                let data = handle.availableData
                guard !data.isEmpty, let self else { break }
                self.lock.withLock { self.output.append(data) }
            }
        }
        thread.start()
    }

    var pid: Int32 { process.processIdentifier }
    var text: String { lock.withLock { String(decoding: output, as: UTF8.self) } }
    var isRunning: Bool { process.isRunning }

    /// SIGKILL: no chance to clean up, as in a crash.
    func killHard() {
        guard process.isRunning else { return }
        kill(pid, SIGKILL)
        // Dead once Foundation has reaped it, or once the kernel shows it as a zombie: Foundation's
        // reaping has been seen to lag for minutes while the test process is busy with load.
        while process.isRunning && !Self.isZombie(pid) { usleep(20_000) }
    }

    /// Whether `pid` has exited and waits only to be reaped (state Z in /proc/<pid>/stat).
    static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    /// SIGTERM now, SIGKILL if it still runs after `grace`; returns at once. Waiting here would
    /// hold one of the test process's few cooperative threads for the whole shutdown and starve
    /// every other test (which then time out); `stopped(grace:)` waits without blocking.
    func terminate(grace: Duration = .seconds(10)) {
        guard process.isRunning else { return }
        process.terminate()
        let process = self.process
        let thread = Thread {
            let deadline = ContinuousClock.now + grace
            // Polling: waitUntilExit spins a run loop at full CPU off the main thread.
            while process.isRunning && !Self.isZombie(process.processIdentifier) && ContinuousClock.now < deadline { usleep(20_000) }
            if process.isRunning && !Self.isZombie(process.processIdentifier) { kill(process.processIdentifier, SIGKILL) }
        }
        thread.start()
    }

    /// SIGTERM, then waits (suspending, not blocking) up to `grace` for the process to exit, then
    /// SIGKILL. Returns whether it exited by itself.
    @discardableResult
    func stopped(grace: Duration = .seconds(10)) async -> Bool {
        guard process.isRunning else { return true }
        process.terminate()
        let deadline = ContinuousClock.now + grace
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        guard process.isRunning else { return true }
        kill(pid, SIGKILL)
        while process.isRunning && !Self.isZombie(pid) { try? await Task.sleep(for: .milliseconds(20)) }
        return false
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
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

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw SetupError("cannot find a free port") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
