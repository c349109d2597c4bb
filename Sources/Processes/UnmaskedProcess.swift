import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program with every signal unblocked and at its default disposition, its output in
/// files. Processes started by Foundation inherit the signal mask of the thread that starts them,
/// and Swift's threads block most signals: a child that relies on one (pgbench's `-T` ends on
/// SIGALRM) would never see it.
public enum UnmaskedProcess {
    public struct SpawnError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public struct Finished: Sendable {
        public var status: Int32
        public var output: String
        public var errors: String
    }

    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]) async throws -> Finished {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try runBlocking(executable, arguments, environment: environment) })
            }
        }
    }

    private static func runBlocking(_ executable: String, _ arguments: [String], environment: [String: String]) throws -> Finished {
        let directory = FileManager.default.temporaryDirectory
        let outputPath = directory.appendingPathComponent("topsail-\(UUID().uuidString).out").path
        let errorsPath = directory.appendingPathComponent("topsail-\(UUID().uuidString).err").path
        defer {
            try? FileManager.default.removeItem(atPath: outputPath)
            try? FileManager.default.removeItem(atPath: errorsPath)
        }
        let pid = try spawn(executable, arguments, environment: environment, output: outputPath, errors: errorsPath)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return Finished(
            status: exitCode(status),
            output: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "",
            errors: (try? String(contentsOfFile: errorsPath, encoding: .utf8)) ?? "")
    }

    /// Starts `executable` without waiting for it: stdin from /dev/null, stdout to the file
    /// `output`, stderr to `errors` (the same file when nil). The caller reaps the child with
    /// `waitpid` (see `exited(_:)`); nothing else in this process does.
    public static func spawn(_ executable: String, _ arguments: [String], environment: [String: String], output: String, errors: String? = nil) throws -> pid_t {
        try spawn(executable, arguments, environment: environment, output: output, errors: errors, stdoutDescriptor: nil)
    }

    private static func spawn(
        _ executable: String, _ arguments: [String], environment: [String: String], output: String, errors: String?, stdoutDescriptor: Int32?
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let stdoutDescriptor {
            posix_spawn_file_actions_adddup2(&actions, stdoutDescriptor, 1)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        }
        if let errors {
            posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        // Nothing else of this process leaks into the child: a daemon it starts (HAProxy) would
        // otherwise hold the engine's listening sockets and database connections after the engine
        // exits, and a restarted engine could not bind its port again.
        guard let closeFrom = Self.addCloseFrom, closeFrom(&actions, 3) == 0 else {
            throw SpawnError(description: "cannot start \(executable): this C library cannot close inherited descriptors (glibc 2.34 or later is needed)")
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard spawned == 0 else { throw SpawnError(description: "cannot start \(executable): \(String(cString: strerror(spawned)))") }
        return pid
    }

    /// Starts `executable` with its stdout on a pipe whose read end is returned (stderr goes to
    /// `errors`); the caller reads it, closes it, and reaps the child.
    public static func spawnReading(_ executable: String, _ arguments: [String], environment: [String: String], errors: String) throws -> (pid: pid_t, output: Int32) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw SpawnError(description: "cannot start \(executable): no pipe (\(String(cString: strerror(errno))))") }
        // The read end must not reach the child (closefrom closes it there anyway).
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        do {
            let pid = try spawn(executable, arguments, environment: environment, output: "/dev/null", errors: errors, stdoutDescriptor: fds[1])
            close(fds[1])
            return (pid, fds[0])
        } catch {
            close(fds[0])
            close(fds[1])
            throw error
        }
    }

    /// The exit code of `pid` if it has exited (reaping it), nil while it runs. A child killed by
    /// a signal reports 128 + the signal, as shells do.
    public static func exited(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        var reaped: pid_t
        repeat { reaped = waitpid(pid, &status, WNOHANG) } while reaped < 0 && errno == EINTR
        if reaped == pid { return exitCode(status) }
        // ECHILD: already reaped elsewhere; there is nothing left to wait for.
        if reaped < 0 { return 128 + SIGKILL }
        return nil
    }

    private static func exitCode(_ status: Int32) -> Int32 {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), which its headers declare only
    /// under _GNU_SOURCE: looked up once at run time.
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()
}
