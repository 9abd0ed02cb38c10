#!/usr/bin/env node
import { runCli } from './cli.js';

const code = await runCli(process.argv.slice(2));
process.exitCode = code;
// A command that failed while a client library was still reconnecting (a queue that refused the password, say)
// may leave sockets that keep Node alive; the output is flushed well within this grace time.
if (code !== 0) setTimeout(() => process.exit(code), 1500).unref();
