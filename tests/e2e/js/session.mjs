// A whole farm-user session through the AWS SDK for JavaScript v3 (@aws-sdk/client-ec2), waiters and
// paginators included, against `ivfarm ec2 serve`. Driven by tests/e2e/test_ec2_js_sdk.py.
//
// Settings come from the environment, each overridable by `--name value` on the command line:
//   IVFARM_EC2_ENDPOINT (--endpoint), IVFARM_EC2_REGION (--region), IVFARM_EC2_IMAGE (--image),
//   AWS_ACCESS_KEY_ID (--access-key), AWS_SECRET_ACCESS_KEY (--secret-key).
// Prints one JSON object of what the session observed on stdout; exits 1 on any unexpected error.
import {
  EC2Client,
  AllocateAddressCommand,
  AssociateAddressCommand,
  AuthorizeSecurityGroupIngressCommand,
  CreateKeyPairCommand,
  CreateSecurityGroupCommand,
  DeleteKeyPairCommand,
  DeleteSecurityGroupCommand,
  DescribeAddressesCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand,
  DescribeTagsCommand,
  DisassociateAddressCommand,
  GetConsoleOutputCommand,
  ReleaseAddressCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  paginateDescribeInstances,
  waitUntilInstanceRunning,
  waitUntilInstanceStopped,
  waitUntilInstanceTerminated,
} from "@aws-sdk/client-ec2";

const USER_DATA = "#!/bin/sh\necho hello from the JavaScript SDK\n";
const WAIT = { minDelay: 1, maxDelay: 2, maxWaitTime: 120 };

function settings(argv) {
  const names = {
    endpoint: "IVFARM_EC2_ENDPOINT", region: "IVFARM_EC2_REGION", image: "IVFARM_EC2_IMAGE",
    "access-key": "AWS_ACCESS_KEY_ID", "secret-key": "AWS_SECRET_ACCESS_KEY",
  };
  const chosen = {};
  for (const [option, variable] of Object.entries(names)) chosen[option] = process.env[variable];
  for (let i = 0; i < argv.length; i += 2) {
    const option = argv[i].replace(/^--/, "");
    if (!(option in names) || i + 1 >= argv.length) throw new Error(`usage: unknown or incomplete option ${argv[i]}`);
    chosen[option] = argv[i + 1];
  }
  for (const [option, value] of Object.entries(chosen)) {
    if (!value) throw new Error(`missing --${option} (or ${names[option]})`);
  }
  return chosen;
}

const instancesOf = (reservations) => (reservations ?? []).flatMap((r) => r.Instances ?? []);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function stateOf(client, id) {
  const found = await client.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
  return instancesOf(found.Reservations)[0].State.Name;
}

async function session(opts) {
  const client = new EC2Client({
    endpoint: opts.endpoint,
    region: opts.region,
    credentials: { accessKeyId: opts["access-key"], secretAccessKey: opts["secret-key"] },
    maxAttempts: 1,
  });
  const seen = {};

  const key = await client.send(new CreateKeyPairCommand({ KeyName: "js-key" }));
  seen.keyPair = { name: key.KeyName, hasPrivateKey: (key.KeyMaterial ?? "").includes("PRIVATE KEY") };
  const keys = await client.send(new DescribeKeyPairsCommand({ KeyNames: ["js-key"] }));
  seen.keyPair.listed = keys.KeyPairs.map((k) => k.KeyName);

  const group = await client.send(new CreateSecurityGroupCommand({ GroupName: "js-web", Description: "web servers" }));
  await client.send(new AuthorizeSecurityGroupIngressCommand({
    GroupId: group.GroupId,
    IpPermissions: [{ IpProtocol: "tcp", FromPort: 80, ToPort: 80, IpRanges: [{ CidrIp: "0.0.0.0/0" }] }],
  }));
  const groups = await client.send(new DescribeSecurityGroupsCommand({ GroupIds: [group.GroupId] }));
  seen.securityGroup = {
    id: group.GroupId,
    names: groups.SecurityGroups.map((g) => g.GroupName),
    ingress: groups.SecurityGroups[0].IpPermissions.map((p) => ({
      protocol: p.IpProtocol, from: p.FromPort, to: p.ToPort, cidrs: (p.IpRanges ?? []).map((r) => r.CidrIp),
    })),
  };

  const tagged = (role) => [{ ResourceType: "instance", Tags: [{ Key: "role", Value: role }, { Key: "session", Value: "js" }] }];
  const web = await client.send(new RunInstancesCommand({
    ImageId: opts.image, InstanceType: "m1.tiny", MinCount: 1, MaxCount: 1, KeyName: "js-key",
    UserData: Buffer.from(USER_DATA).toString("base64"), SecurityGroupIds: [group.GroupId],
    TagSpecifications: tagged("web"),
  }));
  const webId = web.Instances[0].InstanceId;
  seen.launched = { id: webId, state: web.Instances[0].State.Name };
  const running = await waitUntilInstanceRunning({ client, ...WAIT }, { InstanceIds: [webId] });
  seen.launched.waiter = running.state;

  const byTag = await client.send(new DescribeInstancesCommand({ Filters: [{ Name: "tag:role", Values: ["web"] }] }));
  const webInstance = instancesOf(byTag.Reservations)[0];
  seen.tagFilter = {
    web: instancesOf(byTag.Reservations).map((i) => i.InstanceId),
    other: instancesOf((await client.send(new DescribeInstancesCommand({
      Filters: [{ Name: "tag:role", Values: ["other"] }],
    }))).Reservations).map((i) => i.InstanceId),
  };
  seen.launched.keyName = webInstance.KeyName;
  seen.launched.groups = webInstance.SecurityGroups.map((g) => g.GroupId);
  seen.launched.privateIp = webInstance.PrivateIpAddress ?? null;
  const userData = await client.send(new DescribeInstanceAttributeCommand({ InstanceId: webId, Attribute: "userData" }));
  seen.launched.userData = Buffer.from(userData.UserData?.Value ?? "", "base64").toString();

  const batch = await client.send(new RunInstancesCommand({
    ImageId: opts.image, InstanceType: "m1.tiny", MinCount: 6, MaxCount: 6, SecurityGroupIds: [group.GroupId],
    TagSpecifications: tagged("batch"),
  }));
  const batchIds = batch.Instances.map((i) => i.InstanceId);
  await waitUntilInstanceRunning({ client, ...WAIT }, { InstanceIds: batchIds });
  seen.batch = batchIds;

  seen.pages = [];
  for await (const page of paginateDescribeInstances(
    { client, pageSize: 5 }, { Filters: [{ Name: "tag:session", Values: ["js"] }] },
  )) {
    seen.pages.push(instancesOf(page.Reservations).map((i) => i.InstanceId));
  }

  const tags = await client.send(new DescribeTagsCommand({ Filters: [{ Name: "resource-id", Values: [webId] }] }));
  seen.tags = Object.fromEntries(tags.Tags.map((t) => [t.Key, t.Value]));

  const address = await client.send(new AllocateAddressCommand({ Domain: "vpc" }));
  const association = await client.send(new AssociateAddressCommand({ AllocationId: address.AllocationId, InstanceId: webId }));
  const bound = (await client.send(new DescribeAddressesCommand({ AllocationIds: [address.AllocationId] }))).Addresses;
  const withAddress = instancesOf((await client.send(new DescribeInstancesCommand({ InstanceIds: [webId] }))).Reservations)[0];
  seen.address = {
    publicIp: address.PublicIp,
    associationId: association.AssociationId,
    described: bound.map((a) => ({ instanceId: a.InstanceId, associationId: a.AssociationId, publicIp: a.PublicIp })),
    instancePublicIp: withAddress.PublicIpAddress ?? null,
  };
  await client.send(new DisassociateAddressCommand({ AssociationId: association.AssociationId }));
  const unbound = (await client.send(new DescribeAddressesCommand({ AllocationIds: [address.AllocationId] }))).Addresses;
  seen.address.afterDisassociate = unbound.map((a) => a.InstanceId ?? null);
  await client.send(new ReleaseAddressCommand({ AllocationId: address.AllocationId }));
  const remaining = (await client.send(new DescribeAddressesCommand({}))).Addresses.map((a) => a.AllocationId);
  seen.address.releasedGone = !remaining.includes(address.AllocationId);

  // A console log appears some time after boot, as on AWS: ask until it has something (or 30 s pass).
  let consoleSeen = { attempts: 0, output: "" };
  for (const started = Date.now(); Date.now() - started < 30000; await sleep(250)) {
    const got = await client.send(new GetConsoleOutputCommand({ InstanceId: webId }));
    consoleSeen = { attempts: consoleSeen.attempts + 1, instanceId: got.InstanceId, output: "" };
    if (got.Output) {
      consoleSeen.output = Buffer.from(got.Output, "base64").toString();
      break;
    }
  }
  seen.console = consoleSeen;

  await client.send(new StopInstancesCommand({ InstanceIds: [webId] }));
  seen.stop = { waiter: (await waitUntilInstanceStopped({ client, ...WAIT }, { InstanceIds: [webId] })).state };
  seen.stop.state = await stateOf(client, webId);
  await client.send(new StartInstancesCommand({ InstanceIds: [webId] }));
  seen.start = { waiter: (await waitUntilInstanceRunning({ client, ...WAIT }, { InstanceIds: [webId] })).state };
  seen.start.state = await stateOf(client, webId);

  const everyId = [webId, ...batchIds];
  const terminating = await client.send(new TerminateInstancesCommand({ InstanceIds: everyId }));
  seen.terminate = { changes: terminating.TerminatingInstances.map((c) => c.InstanceId) };
  seen.terminate.waiter = (await waitUntilInstanceTerminated({ client, ...WAIT }, { InstanceIds: everyId })).state;
  const after = instancesOf((await client.send(new DescribeInstancesCommand({ InstanceIds: everyId }))).Reservations);
  seen.terminate.states = [...new Set(after.map((i) => i.State.Name))];

  await client.send(new DeleteSecurityGroupCommand({ GroupId: group.GroupId }));
  await client.send(new DeleteKeyPairCommand({ KeyName: "js-key" }));
  const groupsLeft = (await client.send(new DescribeSecurityGroupsCommand({}))).SecurityGroups.map((g) => g.GroupName);
  const keysLeft = (await client.send(new DescribeKeyPairsCommand({}))).KeyPairs.map((k) => k.KeyName);
  seen.deleted = { groupsLeft, keysLeft };

  try {
    await client.send(new DescribeInstancesCommand({ InstanceIds: ["i-0123456789abcdef0"] }));
    seen.unknownInstance = { name: null };
  } catch (error) {
    seen.unknownInstance = { name: error.name, status: error.$metadata?.httpStatusCode ?? null };
  }
  return seen;
}

try {
  const seen = await session(settings(process.argv.slice(2)));
  process.stdout.write(`${JSON.stringify(seen)}\n`);
} catch (error) {
  process.stderr.write(`session failed: ${error.name}: ${error.message}\n${error.stack ?? ""}\n`);
  process.exit(1);
}
