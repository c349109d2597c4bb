import Access
import Foundation
import PipelineEngine
import Synchronization

/// How a `script` stage is confined (decision 0009): each run starts in a bubblewrap sandbox of
/// its own with
/// - new PID, IPC and UTS namespaces (and, unless `network` is on, a network namespace with no
///   interface but loopback), so that the script sees none of the engine's processes and, when
///   the engine dies (`--die-with-parent`), everything it started dies with it;
/// - a file system of the host's `/usr` and `/etc` read-only, a private `/tmp`, its own
///   `/workspace` (also `HOME`) and nothing else of the host but `binds` — the engine's state
///   directory, services file and keys are simply not there;
/// - an environment of `PATH`, `HOME`, the execution and stage ids and the stage's declared `env`;
/// - an unprivileged user (`setpriv`, with no capabilities and no new privileges) and resource
///   limits (`prlimit`: CPU seconds, address space, processes, file size).
///
/// The tools are Debian's `bubblewrap` and util-linux; nothing here is a sandbox of our own.
public struct ScriptSandbox: Sendable {
    public struct Limits: Sendable, Hashable {
        /// CPU time of each process; past it the process gets SIGXCPU, a second later SIGKILL.
        public var cpuSeconds: Int
        /// Address space of each process (RLIMIT_AS).
        public var memoryBytes: Int
        /// Processes of the script user (RLIMIT_NPROC, counted per user by the kernel).
        public var processes: Int
        /// Size of any file the script writes; past it the writer gets SIGXFSZ.
        public var fileSizeBytes: Int

        public init(cpuSeconds: Int = 600, memoryBytes: Int = 2 << 30, processes: Int = 512, fileSizeBytes: Int = 1 << 30) {
            self.cpuSeconds = cpuSeconds
            self.memoryBytes = memoryBytes
            self.processes = processes
            self.fileSizeBytes = fileSizeBytes
        }
    }

    /// The user scripts run as (by name or number) when the engine runs as root.
    public var user: String
    /// Whether scripts share the host's network. Off: they reach nothing, not even loopback
    /// services such as the engine's PostgreSQL.
    public var network: Bool
    public var limits: Limits
    /// Host directories mounted read-write at the same path inside (caches, shared tools).
    public var binds: [String]
    /// Host directories mounted read-only at the same path inside.
    public var readOnlyBinds: [String]
    /// Where each run's private workspace is made (and removed after the run).
    public var workRoot: String
    public var bwrap = "/usr/bin/bwrap"

    public init(
        user: String = "nobody", network: Bool = false, limits: Limits = Limits(), binds: [String] = [], readOnlyBinds: [String] = [],
        workRoot: String = "/var/tmp/topsail-scripts"
    ) {
        self.user = user
        self.network = network
        self.limits = limits
        self.binds = binds
        self.readOnlyBinds = readOnlyBinds
        self.workRoot = workRoot
    }

    /// The script's identity: a resolved user and group, or a user namespace when the engine is
    /// not root (it then cannot switch users; the script runs as an unmapped id of its own).
    enum Identity: Sendable, Hashable {
        case switchTo(uid: UInt32, gid: UInt32)
        case userNamespace
    }

    /// Checks that the tools are installed and the user exists; the error says what to do.
    public func check() throws -> Void {
        _ = try identity()
        for tool in [bwrap, "/usr/bin/prlimit", "/usr/bin/setpriv"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw ScriptSandboxError("script stages are enabled but \(tool) is missing: install Debian's bubblewrap and util-linux (ops/setup does)")
        }
        for path in binds + readOnlyBinds where !path.hasPrefix("/") || !FileManager.default.fileExists(atPath: path) {
            throw ScriptSandboxError("script sandbox bind \(path) is not an existing absolute path")
        }
        removeAbandonedWorkspaces()
    }

    /// Workspaces are named `<engine pid>-<uuid>`; those of an engine that is gone (killed with
    /// `kill -9`, which ran no cleanup) are removed when an engine starts.
    func removeAbandonedWorkspaces() {
        let manager = FileManager.default
        for name in (try? manager.contentsOfDirectory(atPath: workRoot)) ?? [] {
            guard let pid = name.split(separator: "-").first.flatMap({ Int32($0) }), pid > 0,
                  Foundation.kill(pid, 0) != 0, errno == ESRCH
            else { continue }
            try? manager.removeItem(atPath: "\(workRoot)/\(name)")
        }
    }

    func identity() throws -> Identity {
        guard geteuid() == 0 else { return .userNamespace }
        let entry = UInt32(user).flatMap { getpwuid($0) } ?? getpwnam(user)
        guard let entry else { throw ScriptSandboxError("script user \(user) does not exist on this machine (--script-user)") }
        return .switchTo(uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }

    /// Makes a private workspace for one run, owned by the script's user; the caller removes it.
    func makeWorkspace(_ identity: Identity) throws -> String {
        let manager = FileManager.default
        try manager.createDirectory(atPath: workRoot, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        let path = "\(workRoot)/\(getpid())-\(UUID().uuidString.lowercased())"
        try manager.createDirectory(atPath: path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        if case let .switchTo(uid, gid) = identity, chown(path, uid, gid) != 0 {
            throw ScriptSandboxError("cannot give the script workspace \(path) to the script user (errno \(errno))")
        }
        return path
    }

    /// The mount point of the run's workspace inside the sandbox.
    static let workspace = "/workspace"

    /// The command line that runs `command` (with `arguments`) through `/bin/sh -c` inside the
    /// sandbox, with exactly `environment`, starting in `directory` (inside the sandbox).
    func commandLine(
        _ command: String, arguments: [String], environment: [String: String], workspace: String, directory: String, identity: Identity
    ) -> [String] {
        var line = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if !network { line.append("--unshare-net") }
        if case .userNamespace = identity { line += ["--unshare-user", "--uid", "65534", "--gid", "65534"] }
        line += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
        // Debian's merged /usr makes /bin, /lib … symbolic links into /usr; older layouts are directories.
        for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: top) {
                line += ["--symlink", target, top]
            } else if FileManager.default.fileExists(atPath: top) {
                line += ["--ro-bind", top, top]
            }
        }
        line += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp", "--bind", workspace, Self.workspace]
        for path in binds { line += ["--bind", path, path] }
        for path in readOnlyBinds { line += ["--ro-bind", path, path] }
        line += ["--chdir", directory, "--clearenv"]
        for (key, value) in environment.sorted(by: { $0.key < $1.key }) { line += ["--setenv", key, value] }
        line += ["--", "/usr/bin/prlimit",
                 "--cpu=\(limits.cpuSeconds):\(limits.cpuSeconds + 1)", "--as=\(limits.memoryBytes)", "--nproc=\(limits.processes)",
                 "--fsize=\(limits.fileSizeBytes)", "--core=0", "--"]
        if case let .switchTo(uid, gid) = identity {
            line += ["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                     "--no-new-privs", "--"]
        }
        return line + ["/bin/sh", "-c", command, "topsail-script"] + arguments
    }

    /// Why a script that failed most likely failed, when a limit explains it: its exit status
    /// says so for CPU time and file size (the kernel's signals); for processes and memory the
    /// shell's or the program's own message does.
    func limitReached(exitCode: Int32, stderr: String) -> String? {
        if exitCode == 128 + SIGXCPU { return "it used up its CPU time limit (\(limits.cpuSeconds) s)" }
        // A process that survives SIGXCPU (a shell's own loop does) is killed a second later.
        if exitCode == 128 + SIGKILL { return "it was killed (SIGKILL), as a process is one second past its CPU time limit (\(limits.cpuSeconds) s)" }
        if exitCode == 128 + SIGXFSZ { return "it wrote a file past the file size limit (\(Self.bytes(limits.fileSizeBytes)))" }
        guard exitCode != 0 else { return nil }
        let text = stderr.lowercased()
        if ["cannot fork", "fork: resource temporarily unavailable", "fork: retry", "resource temporarily unavailable"].contains(where: text.contains) {
            return "it reached the process limit (\(limits.processes) processes of its user)"
        }
        if ["memoryerror", "cannot allocate memory", "memory exhausted", "out of memory", "bad_alloc"].contains(where: text.contains) {
            return "it reached the memory limit (\(Self.bytes(limits.memoryBytes)) of address space)"
        }
        return nil
    }

    static func bytes(_ count: Int) -> String {
        count >= 1 << 30 && count % (1 << 30) == 0 ? "\(count >> 30) GiB"
            : count >= 1 << 20 ? "\(count >> 20) MiB" : "\(count) bytes"
    }
}

public struct ScriptSandboxError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Starts child processes from one thread that lives as long as the engine. The kernel's
/// parent-death signal (bubblewrap's `--die-with-parent`) follows the *thread* that forked, and
/// the cooperative pool's threads come and go; a script started from one of them would be killed
/// when that thread retired.
enum ProcessLauncher {
    private static let jobs = Mutex<[@Sendable () -> Void]>([])
    private static let signal = DispatchSemaphore(value: 0)
    private static let started: Bool = {
        let thread = Thread {
            while true {
                signal.wait()
                let job = jobs.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                job?()
            }
        }
        thread.name = "topsail.process-launcher"
        thread.start()
        return true
    }()

    /// Runs `job` on the launcher thread.
    static func launch(_ job: @escaping @Sendable () -> Void) {
        _ = started
        jobs.withLock { $0.append(job) }
        signal.signal()
    }
}
