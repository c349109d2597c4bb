import TopsailCLI

await TopsailCommand.runMain()
