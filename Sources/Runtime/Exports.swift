// The shells' users see the machines and the run records through `import Runtime`.
@_exported import Machines
@_exported import RunRecords
