// The launchers' one body: a Node.js older than the project's is told so in one line
// before the program's modules are linked (linking them fails first, with a message
// that names a missing export instead of the version).
const NEED = 24;

export async function launch(prog) {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < NEED) {
    process.stderr.write(`${prog}: error: Node.js ${NEED} or newer is needed; this is ${process.version} (${process.execPath}) (hint: in the checkout run 'npx ${prog}', which uses the Node ${NEED} that 'npm ci' installed)\n`);
    process.exitCode = 1;
    return;
  }
  const { main } = await import('../dist/cli/main.js');
  process.exitCode = await main(process.argv.slice(2), prog);
}
