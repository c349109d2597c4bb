import Access
import API
import ArgumentParser
import CLISupport
import Foundation
import Notifications

// The options of the role commands: `topsail all` takes them all, each role alone its own.

struct NotifierOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "The mail server for email notifications: smtp://user:password@host:port, STARTTLS required unless ?requireTLS=false (default: $TOPSAIL_SMTP_URL, which is better: a command line shows in ps to every local user).",
        valueName: "url"))
    var smtpUrl: String?

    @Option(help: "The sender of notification mail.")
    var smtpFrom: String = "topsail@localhost"

    @Option(help: ArgumentHelp("PEM certificates the mail server's TLS certificate may chain to, besides the system's.", valueName: "path"))
    var smtpCaFile: String?

    @Option(help: "GitHub's API for githubStatus notifications (GitHub Enterprise: https://host/api/v3).")
    var githubApiUrl: String = "https://api.github.com"

    @Option(help: ArgumentHelp("A file holding the GitHub token for commit statuses (default: $TOPSAIL_GITHUB_TOKEN).", valueName: "path"))
    var githubTokenFile: String?

    @Option(help: "Attempts per notification before it is recorded as failed.")
    var notificationAttempts: Int = 5

    @Option(help: "Seconds before the first retry of a notification; each next one waits twice as long (at most 60 s).")
    var notificationBackoff: Double = 1

    func configuration(publicURL: String?) throws -> Roles.Notifier {
        guard notificationAttempts >= 1 else { throw CLIError("--notification-attempts must be at least 1") }
        guard notificationBackoff > 0, notificationBackoff <= 60 else { throw CLIError("--notification-backoff must be more than 0 and at most 60 seconds") }
        var channels = NotificationChannels.Configuration()
        channels.githubAPI = githubApiUrl.hasSuffix("/") ? String(githubApiUrl.dropLast()) : githubApiUrl
        channels.publicURL = publicURL
        if let file = githubTokenFile {
            guard let token = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read the GitHub token file \(file)") }
            channels.githubToken = String(decoding: token, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            channels.githubToken = environment("TOPSAIL_GITHUB_TOKEN").flatMap { $0.isEmpty ? nil : $0 }
        }
        if let url = smtpUrl ?? environment("TOPSAIL_SMTP_URL"), !url.isEmpty {
            var trusted: String?
            if let file = smtpCaFile {
                guard let pem = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read --smtp-ca-file \(file)") }
                trusted = String(decoding: pem, as: UTF8.self)
            }
            do {
                channels.smtp = try SMTPConfiguration(url: url, from: smtpFrom, trustedCertificates: trusted)
            } catch {
                throw CLIError("\(error)")
            }
        }
        let retry = NotifierService.Retry(attempts: notificationAttempts, initialDelay: .milliseconds(Int64(notificationBackoff * 1000)))
        return Roles.Notifier(channels: channels, retry: retry)
    }
}

struct CronOptions: ParsableArguments {
    @Option(help: "The time zone of cron triggers that name none (an IANA name such as Europe/Berlin).")
    var cronTimeZone: String = "UTC"

    @Option(help: "Seconds a cron fire time may pass unfired before it is a misfire (skipped, or fired once late with misfire: fireOnce).")
    var cronMisfireThreshold: Int = 60

    func configuration() throws -> Roles.Cron {
        guard let zone = TimeZone(identifier: cronTimeZone) else {
            throw CLIError("--cron-time-zone \(cronTimeZone) is not a time zone: use an IANA name such as UTC or America/New_York")
        }
        guard cronMisfireThreshold >= 1 else { throw CLIError("--cron-misfire-threshold must be at least 1 second") }
        return Roles.Cron(zone: zone, zoneName: cronTimeZone, misfireThreshold: .seconds(cronMisfireThreshold))
    }
}

struct ObservationOptions: ParsableArguments {
    @Option(help: "Seconds between looks at what the clouds run.")
    var observeEvery: Double = 5

    @Option(help: "Seconds an instance that was Up may fail its health checks before it is replaced.")
    var replaceUnhealthyAfter: Double = 30

    func validate() throws {
        guard observeEvery > 0 else { throw ValidationError("--observe-every must be positive") }
        guard replaceUnhealthyAfter >= 0 else { throw ValidationError("--replace-unhealthy-after must not be negative") }
    }

    var role: Roles.Role {
        .observer(interval: .milliseconds(Int64(observeEvery * 1000)), unhealthyGrace: .milliseconds(Int64(replaceUnhealthyAfter * 1000)))
    }
}

struct SupervisionOptions: ParsableArguments {
    @Option(help: "Seconds between looks for stuck executions.")
    var superviseEvery: Int = 30

    @Option(help: "Seconds an execution may overrun its stages' limits before it counts as stuck.")
    var stuckGrace: Int = 60

    func validate() throws {
        guard superviseEvery > 0 else { throw ValidationError("--supervise-every must be positive") }
        guard stuckGrace >= 0 else { throw ValidationError("--stuck-grace must not be negative") }
    }

    var role: Roles.Role { .supervisor(interval: .seconds(superviseEvery), grace: .seconds(stuckGrace)) }
}

struct HTTPOptions: ParsableArguments {
    @Option(help: "HTTP listen address of the API.")
    var httpHost: String = "127.0.0.1"

    @Option(help: "HTTP port of the API (Spinnaker's Gate uses 8084).")
    var httpPort: Int = 8084

    @Option(help: "Largest request body the API accepts, in bytes; larger ones get 413.")
    var maxBodyBytes: Int = 1 << 20

    @Option(help: "Requests a second each caller may make on average (0: unlimited); beyond it the API answers 429 with Retry-After.")
    var rateLimit: Double = 50

    @Option(help: "Requests a caller may make at once before --rate-limit applies.")
    var rateBurst: Int = 100

    @Option(help: "Seconds a request may take before the API gives up on it with 503 (as while PostgreSQL is away).")
    var requestDeadline: Int = 10

    @Option(name: .customLong("application-creator-role"), help: ArgumentHelp(
        "Only admins and this role may create applications, repeatable; adds to $TOPSAIL_APPLICATION_CREATOR_ROLES (comma-separated). Unset: any caller.",
        valueName: "role"))
    var applicationCreatorRoles: [String] = []

    @Option(help: "Accept bearer JWTs from this OIDC issuer (its 'iss'); needs --oidc-audience and --oidc-jwks (default: $TOPSAIL_OIDC_ISSUER).")
    var oidcIssuer: String?

    @Option(help: "The audience ('aud') the JWTs must be for (default: $TOPSAIL_OIDC_AUDIENCE).")
    var oidcAudience: String?

    @Option(help: "A file holding the issuer's JSON Web Key Set, as served at its jwks_uri (default: $TOPSAIL_OIDC_JWKS).")
    var oidcJwks: String?

    @Option(help: ArgumentHelp(
        "A file holding the 32-byte key (base64) that seals trigger secrets in saved pipelines (default: $TOPSAIL_SECRETS_KEY, the key itself; ops/services makes one). Without a key, pipelines whose triggers have a secret cannot be saved.",
        valueName: "path"))
    var secretsKeyFile: String?

    @Option(help: "Sign in to the web UI at the OIDC provider: its authorization endpoint (default: $TOPSAIL_OIDC_AUTHORIZATION_URL). Needs --oidc-token-url and --public-url; the client id is --oidc-audience.")
    var oidcAuthorizationUrl: String?

    @Option(help: "The provider's token endpoint, where the sign-in's code is redeemed (default: $TOPSAIL_OIDC_TOKEN_URL).")
    var oidcTokenUrl: String?

    @Option(help: ArgumentHelp("A file holding Topsail's client secret at the provider (default: $TOPSAIL_OIDC_CLIENT_SECRET, the secret itself); none for a public client, which PKCE alone protects.", valueName: "path"))
    var oidcClientSecretFile: String?

    @Option(help: "The claim naming the user; 'sub' when it is absent.")
    var oidcUserClaim: String = "preferred_username"

    @Option(help: "The claim listing the user's roles (groups).")
    var oidcRolesClaim: String = "groups"

    func validate() throws {
        guard (1...65_535).contains(httpPort) else { throw ValidationError("--http-port must be 1…65535") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be at least 1024") }
        guard rateLimit >= 0 else { throw ValidationError("--rate-limit must not be negative (0: unlimited)") }
        guard rateBurst >= 1 else { throw ValidationError("--rate-burst must be at least 1") }
        guard (1...3600).contains(requestDeadline) else { throw ValidationError("--request-deadline must be 1…3600 seconds") }
    }

    func configuration(cronTimeZone: TimeZone? = nil, publicURL: String? = nil) throws -> APIServer.Configuration {
        let creators = Set(applicationCreatorRoles + (environment("TOPSAIL_APPLICATION_CREATOR_ROLES") ?? "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        var configuration = APIServer.Configuration(
            host: httpHost, port: httpPort, maxBodyBytes: maxBodyBytes,
            rateLimit: rateLimit > 0 ? RateLimit(requestsPerSecond: rateLimit, burst: rateBurst) : nil,
            applicationCreatorRoles: creators, oidc: try oidc(publicURL: publicURL))
        configuration.requestDeadline = .seconds(requestDeadline)
        configuration.secretSeal = try SecretSeal.configured(file: secretsKeyFile)
        if let cronTimeZone { configuration.cronTimeZone = cronTimeZone }
        return configuration
    }

    private func oidc(publicURL: String?) throws -> OIDCVerifier.Configuration? {
        let issuer = oidcIssuer ?? environment("TOPSAIL_OIDC_ISSUER")
        let audience = oidcAudience ?? environment("TOPSAIL_OIDC_AUDIENCE")
        let jwks = oidcJwks ?? environment("TOPSAIL_OIDC_JWKS")
        guard issuer != nil || audience != nil || jwks != nil else { return nil }
        guard let issuer, let audience, let jwks else {
            throw CLIError("OIDC needs all three of --oidc-issuer, --oidc-audience and --oidc-jwks (or $TOPSAIL_OIDC_ISSUER, _AUDIENCE, _JWKS)")
        }
        guard let keys = FileManager.default.contents(atPath: jwks) else {
            throw CLIError("cannot read the OIDC key set \(jwks): save the issuer's jwks_uri document to a file and pass its path")
        }
        var configuration = OIDCVerifier.Configuration(
            issuer: issuer, audience: audience, jwks: String(decoding: keys, as: UTF8.self), userClaim: oidcUserClaim, rolesClaim: oidcRolesClaim)
        let authorization = oidcAuthorizationUrl ?? environment("TOPSAIL_OIDC_AUTHORIZATION_URL")
        let token = oidcTokenUrl ?? environment("TOPSAIL_OIDC_TOKEN_URL")
        if authorization != nil || token != nil {
            guard let authorization, let token, let publicURL else {
                throw CLIError("signing in at the OIDC provider needs --oidc-authorization-url, --oidc-token-url and --public-url (or $TOPSAIL_OIDC_AUTHORIZATION_URL, _TOKEN_URL, $TOPSAIL_PUBLIC_URL)")
            }
            for (name, url) in [("--oidc-authorization-url", authorization), ("--oidc-token-url", token), ("--public-url", publicURL)] {
                guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
                    throw CLIError("\(name) must be an http(s) URL, not '\(url)'")
                }
            }
            var secret = environment("TOPSAIL_OIDC_CLIENT_SECRET")
            if let file = oidcClientSecretFile {
                guard let text = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read the OIDC client secret file \(file)") }
                secret = String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            configuration.signIn = .init(authorizationURL: authorization, tokenURL: token, clientID: audience, clientSecret: secret,
                                         redirectURL: publicURL.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + "/ui/oidc/callback")
        }
        return configuration
    }
}

extension SecretSeal {
    /// The installation's seal: the key in `file`, else in $TOPSAIL_SECRETS_KEY; nil when neither is given.
    static func configured(file: String?) throws -> SecretSeal? {
        let key: String
        if let file {
            guard let contents = FileManager.default.contents(atPath: file) else {
                throw CLIError("cannot read the secrets key file \(file): it should hold 32 random bytes in base64 (head -c 32 /dev/urandom | base64)")
            }
            key = String(decoding: contents, as: UTF8.self)
        } else if let given = environment("TOPSAIL_SECRETS_KEY"), !given.isEmpty {
            key = given
        } else {
            return nil
        }
        do {
            return try SecretSeal(base64: key)
        } catch {
            throw CLIError("\(error) (from \(file ?? "$TOPSAIL_SECRETS_KEY"))")
        }
    }
}

/// Where people reach Topsail: links in notifications, and the OIDC provider's redirect back.
struct PublicURLOptions: ParsableArguments {
    @Option(help: "The URL browsers reach Topsail at (e.g. https://topsail.example.com): links in notifications, and the OIDC sign-in's redirect back to <URL>/ui/oidc/callback (default: $TOPSAIL_PUBLIC_URL).")
    var publicUrl: String?

    var value: String? { publicUrl ?? ProcessInfo.processInfo.environment["TOPSAIL_PUBLIC_URL"].flatMap { $0.isEmpty ? nil : $0 } }
}
