import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// Where mail goes: `smtp://user:password@host:port` (STARTTLS whenever the server offers it, and
/// required when `requireTLS`), with the sender's address.
public struct SMTPConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public var from: String
    public var requireTLS: Bool
    /// PEM certificates to trust besides the system's (a test server's own certificate).
    public var trustedCertificates: String?

    /// Reads `smtp://[user[:password]@]host[:port]`; `?requireTLS=false` lets a server without
    /// STARTTLS be used (a local relay).
    public init(url: String, from: String, trustedCertificates: String? = nil) throws {
        guard let components = URLComponents(string: url), components.scheme == "smtp", let host = components.host, !host.isEmpty else {
            throw SMTPError("the mail server must be given as smtp://user:password@host:port, not \(url.split(separator: "@").last ?? "")")
        }
        self.host = host
        port = components.port ?? 587
        username = components.user?.removingPercentEncoding
        password = components.password?.removingPercentEncoding
        self.from = from
        requireTLS = components.queryItems?.first { $0.name == "requireTLS" }?.value != "false"
        self.trustedCertificates = trustedCertificates
    }
}

public struct SMTPError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public let retriable: Bool

    init(_ description: String, retriable: Bool = false) {
        self.description = description
        self.retriable = retriable
    }
}

public struct Mail: Sendable {
    public var from: String
    public var to: [String]
    public var subject: String
    public var body: String
    public var messageID: String
}

/// A small SMTP client (RFC 5321): EHLO, STARTTLS (RFC 3207), AUTH PLAIN, one message, QUIT.
struct SMTPClient {
    let configuration: SMTPConfiguration

    func send(_ mail: Mail) async throws(SendFailure) {
        do {
            try await deliver(mail)
        } catch let error as SMTPError {
            throw SendFailure(description: "mail: \(error.description)", retriable: error.retriable)
        } catch {
            throw SendFailure(description: "mail: connecting to \(configuration.host):\(configuration.port) failed: \(error)", retriable: true)
        }
    }

    private func deliver(_ mail: Mail) async throws {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(10))
            .connect(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder()))
                    return try NIOAsyncChannel<String, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let tlsConfiguration = try tls()
        let (host, configuration) = (self.configuration.host, self.configuration)
        try await channel.executeThenClose { inbound, outbound in
            var lines = inbound.makeAsyncIterator()
            func reply(_ expected: Int, after what: String) async throws -> [String] {
                var text: [String] = []
                while true {
                    guard let line = try await lines.next() else { throw SMTPError("the server closed the connection after \(what)", retriable: true) }
                    text.append(line)
                    if line.count < 4 || line[line.index(line.startIndex, offsetBy: 3)] != "-" { break }
                }
                let code = Int(text.last?.prefix(3) ?? "") ?? 0
                guard code == expected else {
                    // 4xx: try again later; 5xx: refused for good.
                    throw SMTPError("the server answered \(text.last ?? "nothing") to \(what)", retriable: code / 100 == 4 || code == 0)
                }
                return text
            }
            func say(_ line: String) async throws { try await outbound.write(ByteBuffer(string: line + "\r\n")) }

            _ = try await reply(220, after: "connecting")
            try await say("EHLO topsail")
            var extensions = try await reply(250, after: "EHLO")
            if extensions.contains(where: { $0.dropFirst(4).uppercased().hasPrefix("STARTTLS") }) {
                try await say("STARTTLS")
                _ = try await reply(220, after: "STARTTLS")
                let context = try NIOSSLContext(configuration: tlsConfiguration)
                // An IP address is not a name to send in SNI; the certificate is then checked against the address.
                let isAddress = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
                try await channel.channel.pipeline.addHandler(
                    try NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : host), position: .first).get()
                try await say("EHLO topsail")
                extensions = try await reply(250, after: "EHLO over TLS")
            } else if configuration.requireTLS {
                throw SMTPError("\(host) does not offer STARTTLS; refusing to send credentials and mail in the clear (add ?requireTLS=false to the URL for a local relay)")
            }
            if let user = configuration.username, let password = configuration.password {
                guard extensions.contains(where: { $0.uppercased().contains("AUTH") && $0.uppercased().contains("PLAIN") }) else {
                    throw SMTPError("\(host) offers no AUTH PLAIN")
                }
                let token = Data("\u{0}\(user)\u{0}\(password)".utf8).base64EncodedString()
                try await say("AUTH PLAIN \(token)")
                _ = try await reply(235, after: "AUTH")
            }
            try await say("MAIL FROM:<\(mail.from)>")
            _ = try await reply(250, after: "MAIL FROM")
            for recipient in mail.to {
                try await say("RCPT TO:<\(recipient)>")
                _ = try await reply(250, after: "RCPT TO \(recipient)")
            }
            try await say("DATA")
            _ = try await reply(354, after: "DATA")
            try await outbound.write(ByteBuffer(string: Self.message(mail)))
            _ = try await reply(250, after: "the message")
            try await say("QUIT")
            _ = try? await reply(221, after: "QUIT")
        }
    }

    private func tls() throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let pem = configuration.trustedCertificates {
            let certificates = try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))
            tls.trustRoots = .certificates(certificates)
        }
        return tls
    }

    /// The message as DATA carries it: headers, a blank line, the body with dot-stuffing, the end.
    static func message(_ mail: Mail) -> String {
        func clean(_ text: String) -> String { text.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ") }
        let date = Date().formatted(.dateTime.weekday(.abbreviated).day().month(.abbreviated).year().hour(.twoDigits(amPM: .omitted)).minute().second()
            .locale(Locale(identifier: "en_US_POSIX")))
        var lines = [
            "From: \(clean(mail.from))", "To: \(clean(mail.to.joined(separator: ", ")))", "Subject: \(clean(mail.subject))",
            "Message-ID: \(mail.messageID)", "Date: \(date) +0000", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit", "",
        ]
        for line in mail.body.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false) {
            lines.append(line.hasPrefix(".") ? "." + line : String(line))
        }
        return lines.joined(separator: "\r\n") + "\r\n.\r\n"
    }
}

/// Splits the server's bytes into lines (CRLF or LF), as SMTP replies come.
struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = String

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > 64 * 1024 { throw SMTPError("a reply line longer than 64 KiB") }
            return .needMoreData
        }
        let length = newline - buffer.readerIndex
        var line = buffer.readString(length: length) ?? ""
        buffer.moveReaderIndex(forwardBy: 1)
        if line.hasSuffix("\r") { line.removeLast() }
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }
}
