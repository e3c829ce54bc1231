// nodemailer peer for the oauthsmtp benchmark (optional; see bench/README.md).
//
// Usage: NODE_PATH=<folder with nodemailer> node nodemailer_send.js CONFIG.json
// CONFIG: {host, port, ca_file, account, access_token, count, large, name}.
// Sends one warm-up message (opens the pooled connection: the "setup"), then `count`
// messages one after another on that connection (STARTTLS, XOAUTH2), and prints JSON:
// {version, setup, elapsed, cpu: [seconds per message]}.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const nodemailer = require("nodemailer");

const TEXT =
  "Hello Bob,\n\n" +
  "This is a small benchmark message from oauthsmtp. ".repeat(14) +
  "\n\nAlice\n";

function message(config, index, attachment) {
  const mail = {
    from: config.account,
    to: "bob@example.test",
    subject: `Benchmark message ${index}`,
    text: TEXT,
  };
  if (attachment) {
    mail.attachments = [
      { filename: "report.bin", content: attachment, contentType: "application/octet-stream" },
    ];
  }
  return mail;
}

function seconds(startNs) {
  return Number(process.hrtime.bigint() - startNs) / 1e9;
}

async function main() {
  const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const transport = nodemailer.createTransport({
    host: config.host,
    port: config.port,
    secure: false,
    requireTLS: true,
    name: config.name,
    tls: { ca: [fs.readFileSync(config.ca_file)] },
    auth: { type: "OAuth2", user: config.account, accessToken: config.access_token },
    pool: true,
    maxConnections: 1,
    maxMessages: Infinity,
  });
  const attachment = config.large ? crypto.randomBytes(1024 * 1024) : null;

  let start = process.hrtime.bigint();
  await transport.sendMail(message(config, -1, attachment));
  const setup = seconds(start);

  const cpu = [];
  let elapsed = 0;
  for (let i = 0; i < config.count; i++) {
    const mail = message(config, i, attachment);
    const cpuBefore = process.cpuUsage();
    start = process.hrtime.bigint();
    await transport.sendMail(mail);
    elapsed += seconds(start);
    const used = process.cpuUsage(cpuBefore);
    cpu.push((used.user + used.system) / 1e6);
  }
  transport.close();
  const version = require("nodemailer/package.json").version;
  process.stdout.write(JSON.stringify({ version, setup, elapsed, cpu }) + "\n");
}

main().catch((error) => {
  process.stderr.write(`nodemailer benchmark failed: ${error.stack || error}\n`);
  process.exit(1);
});
