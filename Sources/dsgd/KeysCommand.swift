import ArgumentParser
import Foundation
import ZeroMQTransport

struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "CurveZMQ keys for encrypted, authenticated clusters.",
        subcommands: [Generate.self])

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write server.pub/.key, client.pub/.key and authorized_clients into DIR (secret files mode 600).")

        @Argument(help: "The folder to create; copy it to every host and pass it as --curve-keys.")
        var directory: String

        func run() throws {
            try CurveKeys.generate(in: URL(fileURLWithPath: directory))
            print("wrote CURVE keys to \(directory)")
        }
    }
}

/// Loads `--curve-keys` and starts the ZAP handler that admits only authorised clients.
func curveSecurity(_ directory: String?, context: ZeroMQContext, role: String) throws -> (CurveKeys, ZAPAuthenticator)?
{
    guard let directory else { return nil }
    let keys: CurveKeys
    do { keys = try CurveKeys.load(from: URL(fileURLWithPath: directory)) } catch {
        throw ValidationError("--curve-keys: \(error)")
    }
    let authenticator = try ZAPAuthenticator(context: context, authorized: keys.authorizedClients) { message in
        logLine("\(role): security: \(message)")
    }
    return (keys, authenticator)
}
