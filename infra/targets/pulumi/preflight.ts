/**
 * Pre-flight: the rules Pulumi and the providers apply before (or while) they create
 * anything, which a run under `pulumi.runtime.setMocks` never reaches: how Pulumi
 * loads the project and stack files, the names the providers accept (with Pulumi's
 * autonaming suffix), the limits AWS and Docker put on what the program sends, and
 * two rules of a sound program (every resource registered where `pulumi preview`
 * sees it, every stack output resolvable).
 *
 * Pure functions over data: the parsed Pulumi.yaml / Pulumi.<stack>.yaml, and the
 * resources a program registered (the mocked run records them, see
 * test/support/pulumi-mocks.ts; the policy pack in policy/ hands over what the engine
 * sends). Every rule names where Pulumi or the provider states it, in a comment and
 * in its findings. Docs: docs/preflight.md.
 */

/** A resource as the program registered it. */
export interface GraphResource {
  /** The type token, e.g. `aws:ec2/securityGroup:SecurityGroup`. */
  type: string;
  /** The logical name (the resource's name in the program). */
  name: string;
  urn?: string;
  /** The parent's URN, if any. */
  parent?: string;
  /** The inputs, secrets unwrapped (the rules read values, never print them). */
  inputs: Record<string, unknown>;
  /** Set (by the mocked run) when the resource was registered inside an Output's apply callback. */
  registeredInApply?: string;
}

/** One broken rule. */
export interface Finding {
  rule: string;
  /** What breaks it: `type::name` of a resource, or a file and key. */
  subject: string;
  message: string;
  /** Where Pulumi or the provider states the rule. */
  source: string;
}

/** Where each rule is stated. */
export const SOURCES = {
  projectName: 'https://github.com/pulumi/pulumi/blob/master/sdk/go/common/tokens/project.go',
  projectSchema: 'https://github.com/pulumi/pulumi/blob/master/sdk/go/common/workspace/project.json',
  projectConfig: 'https://github.com/pulumi/pulumi/blob/master/sdk/go/common/workspace/project.go',
  projectFile: 'https://www.pulumi.com/docs/iac/concepts/projects/project-file/',
  stackName: 'https://github.com/pulumi/pulumi/blob/master/sdk/go/common/tokens/stack_name.go',
  configKey: 'https://github.com/pulumi/pulumi/blob/master/sdk/go/common/resource/config/key.go',
  config: 'https://www.pulumi.com/docs/iac/concepts/config/',
  autonaming: 'https://github.com/pulumi/pulumi-terraform-bridge/blob/master/pkg/tfbridge/names.go',
  awsAutonaming: 'https://github.com/pulumi/pulumi-aws/blob/master/provider/autonaming.go',
  securityGroup: 'https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html',
  ipRange: 'https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_IpRange.html',
  ipPermission: 'https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_IpPermission.html',
  userData: 'https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html',
  tag: 'https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Tag.html',
  vpc: 'https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVpc.html',
  subnet: 'https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSubnet.html',
  ebsVolume: 'https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVolume.html',
  iamRole: 'https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html',
  iamInstanceProfile: 'https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateInstanceProfile.html',
  iamRolePolicy: 'https://docs.aws.amazon.com/IAM/latest/APIReference/API_PutRolePolicy.html',
  iamQuotas: 'https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html',
  ssmParameter: 'https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html',
  ssmParameterNames: 'https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-su-create.html',
  s3BucketNames: 'https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html',
  s3ObjectKeys: 'https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html',
  s3BucketPolicy: 'https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketPolicy.html',
  dockerNames: 'https://github.com/moby/moby/blob/master/daemon/names/names.go',
  dockerVolumeNames: 'https://github.com/moby/moby/blob/master/volume/local/local.go',
  imageReference: 'https://github.com/distribution/reference/blob/main/regexp.go',
  imageNameLength: 'https://github.com/distribution/reference/blob/main/reference.go',
  randomPassword: 'https://www.pulumi.com/registry/packages/random/api-docs/randompassword/',
  tlsPrivateKey: 'https://www.pulumi.com/registry/packages/tls/api-docs/privatekey/',
  tlsCert: 'https://www.pulumi.com/registry/packages/tls/api-docs/locallysignedcert/',
  urn: 'https://www.pulumi.com/docs/iac/concepts/resources/names/',
  typeToken: 'https://www.pulumi.com/docs/reference/pkg/nodejs/pulumi/pulumi/functions/resourceType.html',
  apply: 'https://www.pulumi.com/docs/iac/concepts/inputs-outputs/apply/',
  outputs: 'https://github.com/pulumi/pulumi/blob/master/sdk/nodejs/runtime/rpc.ts',
  /** This project's own rule: nothing internal reachable from the internet. */
  internal: 'docs/security.md',
  dockerPublish: 'https://docs.docker.com/engine/network/#published-ports',
} as const;

function finding(rule: string, subject: string, message: string, source: string): Finding {
  return { rule, subject, message: `${message} (${source})`, source };
}

const subjectOf = (r: GraphResource) => `${r.type}::${r.name}`;

// ---------------------------------------------------------------------------
// The project file (Pulumi.yaml) and the stack files (Pulumi.<stack>.yaml)
// ---------------------------------------------------------------------------

/**
 * Project names: non-empty, at most 100 characters, a Pulumi `Name` (first character
 * a letter, `_` or `.`, then letters, digits, `_`, `.`, `-`): tokens.ValidateProjectName
 * and tokens.IsName (sdk/go/common/tokens/project.go, names.go).
 */
const PROJECT_NAME = /^[A-Za-z_.][A-Za-z0-9_.-]*$/;
/** The config types a project may declare (project.json, simpleConfigType). */
const CONFIG_TYPES = ['string', 'integer', 'boolean', 'array'];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Whether a value has a declared config type (workspace.ValidateConfigValue). */
function hasConfigType(type: string, items: unknown, value: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'integer':
      return (typeof value === 'number' && Number.isInteger(value)) || (typeof value === 'string' && /^[+-]?\d+$/.test(value));
    case 'boolean':
      return typeof value === 'boolean' || value === 'true' || value === 'false';
    case 'array': {
      if (!Array.isArray(value) || !isObject(items) || typeof items.type !== 'string') return false;
      return value.every((v) => hasConfigType(items.type as string, items.items, v));
    }
    default:
      return false;
  }
}

/** A project config key's namespace: its own (`project:key` or a bare `key`) or another one. */
function isProjectKey(project: string, key: string): boolean {
  // workspace.configKeyIsNamespacedByProject
  return !key.includes(':') || key.startsWith(`${project}:`);
}

/** Rules Pulumi applies when it loads Pulumi.yaml; any of them failing fails every command, `pulumi config` included. */
export function checkProjectFile(project: unknown, file = 'Pulumi.yaml'): Finding[] {
  const out: Finding[] = [];
  if (!isObject(project)) return [finding('project-file', file, 'the project file is not a YAML mapping', SOURCES.projectConfig)];
  const name = project.name;
  if (typeof name !== 'string' || name.length === 0) {
    out.push(finding('project-name', `${file} name`, 'the project has no name', SOURCES.projectName));
  } else if (name.length > 100 || !PROJECT_NAME.test(name)) {
    out.push(finding('project-name', `${file} name`, `project name ${JSON.stringify(name)}: project names are at most 100 characters, a letter, _ or . first, then letters, digits, _ . -`, SOURCES.projectName));
  }
  if (project.runtime === undefined) out.push(finding('project-runtime', `${file} runtime`, 'the project has no runtime', SOURCES.projectSchema));
  const config = project.config ?? {};
  if (!isObject(config)) return out;
  const projectName = typeof name === 'string' ? name : '';
  for (const [key, declared] of Object.entries(config)) {
    const subject = `${file} config.${key}`;
    // A bare value is a default (project keys) or a value (other namespaces): nothing to check.
    if (!isObject(declared)) continue;
    if (declared.default !== undefined && declared.value !== undefined) {
      out.push(finding('project-config', subject, `project config '${key}' cannot have both a 'default' and 'value' attribute`, SOURCES.projectConfig));
    }
    if (isProjectKey(projectName, key)) {
      const type = declared.type;
      if (type !== undefined && (typeof type !== 'string' || !CONFIG_TYPES.includes(type))) {
        out.push(finding('project-config', subject, `type ${JSON.stringify(type)} is not one of ${CONFIG_TYPES.join(', ')}`, SOURCES.projectSchema));
      } else if (type === 'array' && declared.items === undefined) {
        out.push(finding('project-config', subject, `the configuration key '${key}' declares an array but does not specify the underlying type via the 'items' attribute`, SOURCES.projectConfig));
      } else if (typeof type === 'string' && declared.default !== undefined && !hasConfigType(type, declared.items, declared.default)) {
        out.push(finding('project-config', subject, `the default value specified for configuration key '${key}' is not of the expected type '${type}'`, SOURCES.projectConfig));
      }
      continue;
    }
    // Keys of another namespace (a provider's, or a project's own keys under a foreign name).
    if (declared.type !== undefined) {
      out.push(
        finding(
          'project-config',
          subject,
          `Configuration key '${key}' is not namespaced by the project and should not define a type: the project is '${projectName}', so only '${projectName}:' keys (or bare keys) may be typed`,
          SOURCES.projectConfig,
        ),
      );
    } else if (declared.default !== undefined) {
      out.push(finding('project-config', subject, `Configuration key '${key}' is not namespaced by the project and should not define a default value`, SOURCES.projectConfig));
    } else if (declared.value === undefined) {
      out.push(finding('project-config', subject, `Configuration key '${key}' is namespaced and must provide an attribute 'value'`, SOURCES.projectConfig));
    }
  }
  return out;
}

/** A stack name: at most 100 characters of letters, digits, `_`, `.`, `-` (tokens.ParseStackName). */
const STACK_NAME = /^[A-Za-z0-9_.-]{1,100}$/;

/** `<namespace>:<name>`, or the old `<namespace>:config:<name>` (config.ParseKey). */
function isConfigKey(key: string): boolean {
  const parts = key.split(':');
  if (parts.length === 2) return parts[0] !== '' && parts[1] !== '';
  return parts.length === 3 && parts[1] === 'config' && parts[0] !== '' && parts[2] !== '';
}

export interface StackFileInput {
  /** The stack's name (`local` for Pulumi.local.yaml). */
  stack: string;
  /** The parsed Pulumi.yaml. */
  project: unknown;
  /** The parsed Pulumi.<stack>.yaml. */
  stackFile: unknown;
  /**
   * The config keys the program read on a run of this stack (the mocked run records
   * them). A key the stack sets in a namespace the program reads from, but that the
   * program never reads, is a typo Pulumi does not report: Config.get returns
   * undefined for keys nobody set, and nobody reads keys nobody asked for.
   */
  programReads?: readonly string[];
}

/** Rules Pulumi applies when it loads a stack's config, and the program's own (every key it is given, it reads). */
export function checkStackFile(input: StackFileInput): Finding[] {
  const file = `Pulumi.${input.stack}.yaml`;
  const out: Finding[] = [];
  if (!STACK_NAME.test(input.stack)) {
    out.push(finding('stack-name', file, `stack name ${JSON.stringify(input.stack)}: at most 100 characters of letters, digits, _ . -`, SOURCES.stackName));
  }
  const stackFile = isObject(input.stackFile) ? input.stackFile : {};
  const config = isObject(stackFile.config) ? stackFile.config : {};
  for (const key of Object.keys(config)) {
    if (!isConfigKey(key)) {
      out.push(finding('stack-config-key', `${file} ${key}`, `could not parse ${key} as a configuration key (configuration keys should be of the form <namespace>:<name>)`, SOURCES.configKey));
    }
  }
  // Typed project keys: each stack sets them (unless they have a default), with a value of their type.
  const project = isObject(input.project) ? input.project : {};
  const projectName = typeof project.name === 'string' ? project.name : '';
  const declared = isObject(project.config) ? project.config : {};
  for (const [rawKey, declaration] of Object.entries(declared)) {
    if (!isObject(declaration) || typeof declaration.type !== 'string' || !isProjectKey(projectName, rawKey)) continue;
    const key = rawKey.includes(':') ? rawKey : `${projectName}:${rawKey}`;
    const value = config[key];
    if (value === undefined) {
      if (declaration.default === undefined) out.push(finding('stack-config-typed', `${file} ${key}`, `Stack '${input.stack}' is missing configuration value '${key}'`, SOURCES.projectFile));
      continue;
    }
    // A secret's type cannot be checked without decrypting it; Pulumi checks it then.
    if (isObject(value) && 'secure' in value) continue;
    if (!hasConfigType(declaration.type, declaration.items, value)) {
      out.push(finding('stack-config-typed', `${file} ${key}`, `Stack '${input.stack}' with configuration key '${key}' must be of type '${declaration.type}'`, SOURCES.projectFile));
    }
  }
  if (input.programReads) {
    const reads = new Set(input.programReads);
    const namespaces = new Set(input.programReads.map((k) => k.split(':')[0]));
    for (const key of Object.keys(config)) {
      if (namespaces.has(key.split(':')[0]) && !reads.has(key)) {
        out.push(
          finding(
            'stack-config-read',
            `${file} ${key}`,
            `${key} is set but the program never reads it (it reads ${[...reads].filter((k) => k.startsWith(`${key.split(':')[0]}:`)).join(', ')}): a misspelt key is silently ignored`,
            SOURCES.config,
          ),
        );
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Names and limits, per resource type
// ---------------------------------------------------------------------------

/**
 * The physical name a provider gives a resource: the `name` input when the program
 * sets one, else Pulumi's autoname, the logical name plus `-` and 7 random characters
 * (tfbridge.AutoName: Separator "-", Randlen 7; pulumi-aws and pulumi-docker are
 * bridged providers). `xxxxxxx` stands for the random part: every character the
 * suffix can take is a lowercase hex digit, which every rule here accepts wherever
 * an `x` is accepted.
 */
export function physicalName(r: GraphResource, input = 'name'): { name: string; autonamed: boolean } | undefined {
  const given = r.inputs[input];
  if (typeof given === 'string') return { name: given, autonamed: false };
  if (given !== undefined) return undefined;
  return { name: `${r.name}-xxxxxxx`, autonamed: true };
}

const described = (p: { name: string; autonamed: boolean }) => (p.autonamed ? `autonamed ${JSON.stringify(p.name)} (the logical name plus Pulumi's 7-character suffix)` : `name ${JSON.stringify(p.name)}`);

/** Security group names and descriptions, and rule descriptions, in a VPC: the characters EC2 accepts. */
const EC2_TEXT = /^[a-zA-Z0-9 ._\-:/()#,@[\]+=&;{}!$*]*$/;

function checkSecurityGroup(r: GraphResource): Finding[] {
  const out: Finding[] = [];
  const prefix = r.inputs.namePrefix;
  const name = typeof prefix === 'string' ? { name: `${prefix}xxxxxxxxxxxxxxxxxxxxxxxxxx`, autonamed: true } : physicalName(r);
  if (name) {
    // CreateSecurityGroup, GroupName: "Up to 255 characters in length. Cannot start with sg-."
    if (name.name.startsWith('sg-')) {
      out.push(finding('aws-security-group-name', subjectOf(r), `${described(name)}: a security group name cannot start with sg-; rename the resource`, SOURCES.securityGroup));
    }
    if (name.name.length > 255) out.push(finding('aws-security-group-name', subjectOf(r), `${described(name)} is ${name.name.length} characters; at most 255`, SOURCES.securityGroup));
    if (!EC2_TEXT.test(name.name)) out.push(finding('aws-security-group-name', subjectOf(r), `${described(name)} has characters a VPC security group name cannot have (a-z, A-Z, 0-9, spaces, ._-:/()#,@[]+=&;{}!$*)`, SOURCES.securityGroup));
  }
  out.push(...checkEc2Text(r, 'description', 'aws-security-group-description', SOURCES.securityGroup));
  return out;
}

function checkEc2Text(r: GraphResource, input: string, rule: string, source: string): Finding[] {
  const text = r.inputs[input];
  if (typeof text !== 'string') return [];
  if (text.length > 255) return [finding(rule, subjectOf(r), `${input} is ${text.length} characters; at most 255`, source)];
  if (!EC2_TEXT.test(text)) return [finding(rule, subjectOf(r), `${input} ${JSON.stringify(text)} has characters EC2 refuses (allowed: a-z, A-Z, 0-9, spaces, ._-:/()#,@[]+=&;{}!$*)`, source)];
  return [];
}

/** One security-group rule (aws.vpc.SecurityGroupIngressRule / EgressRule): ports and description. */
function checkSecurityGroupRule(r: GraphResource): Finding[] {
  const out = checkEc2Text(r, 'description', 'aws-security-group-rule-description', SOURCES.ipRange);
  const protocol = String(r.inputs.ipProtocol ?? '');
  // IpPermission: "For tcp, udp, and icmp, you must specify a port range."
  if (protocol === 'tcp' || protocol === 'udp' || protocol === '6' || protocol === '17') {
    const from = r.inputs.fromPort;
    const to = r.inputs.toPort;
    const port = (p: unknown) => typeof p === 'number' && Number.isInteger(p) && p >= 0 && p <= 65535;
    if (!port(from) || !port(to) || (from as number) > (to as number)) {
      out.push(finding('aws-security-group-rule-ports', subjectOf(r), `${protocol} needs a port range fromPort <= toPort within 0-65535, got ${JSON.stringify(from)}-${JSON.stringify(to)}`, SOURCES.ipPermission));
    }
  }
  return out;
}

/** EC2 tags: keys at most 127 characters and not beginning with aws:, values at most 256. */
function checkTags(r: GraphResource): Finding[] {
  const tags = r.inputs.tags;
  if (!isObject(tags)) return [];
  const out: Finding[] = [];
  for (const [key, value] of Object.entries(tags)) {
    if ([...key].length > 127) out.push(finding('aws-tag', subjectOf(r), `tag key ${JSON.stringify(key)} is ${[...key].length} characters; at most 127`, SOURCES.tag));
    if (key.toLowerCase().startsWith('aws:')) out.push(finding('aws-tag', subjectOf(r), `tag key ${JSON.stringify(key)} may not begin with aws:`, SOURCES.tag));
    if (typeof value === 'string' && [...value].length > 256) out.push(finding('aws-tag', subjectOf(r), `tag ${key}'s value is ${[...value].length} characters; at most 256`, SOURCES.tag));
  }
  return out;
}

/** "User data is limited to 16 KB, in raw form, before it is base64-encoded." */
export const USER_DATA_LIMIT = 16 * 1024;

function checkInstance(r: GraphResource): Finding[] {
  const raw = typeof r.inputs.userData === 'string' ? Buffer.byteLength(r.inputs.userData, 'utf8') : typeof r.inputs.userDataBase64 === 'string' ? Buffer.from(r.inputs.userDataBase64, 'base64').length : 0;
  if (raw <= USER_DATA_LIMIT) return [];
  return [finding('aws-user-data-size', subjectOf(r), `user data is ${raw} bytes raw; EC2 takes at most ${USER_DATA_LIMIT} (16 KB before base64)`, SOURCES.userData)];
}

/** VPCs and subnets: IPv4 blocks between /16 and /28. */
function checkCidrSize(source: string, rule: string) {
  return (r: GraphResource): Finding[] => {
    const cidr = r.inputs.cidrBlock;
    if (typeof cidr !== 'string') return [];
    const bits = Number(cidr.split('/')[1]);
    if (Number.isInteger(bits) && bits >= 16 && bits <= 28) return [];
    return [finding(rule, subjectOf(r), `cidrBlock ${cidr}: the block must be between a /16 and a /28 netmask`, source)];
  };
}

/** EBS volume sizes by type (CreateVolume, Size). */
const EBS_SIZES: Record<string, [number, number]> = { gp2: [1, 16384], gp3: [1, 65536], io1: [4, 16384], io2: [4, 65536], st1: [125, 16384], sc1: [125, 16384], standard: [1, 1024] };

function checkEbsVolume(r: GraphResource): Finding[] {
  const type = typeof r.inputs.type === 'string' ? r.inputs.type : 'gp2';
  const size = r.inputs.size;
  const range = EBS_SIZES[type];
  if (typeof size !== 'number' || !range) return [];
  if (size >= range[0] && size <= range[1]) return [];
  return [finding('aws-ebs-volume-size', subjectOf(r), `a ${type} volume is ${range[0]}-${range[1]} GiB, got ${size}`, SOURCES.ebsVolume)];
}

/** IAM names (roles, instance profiles, inline policies): `[\w+=,.@-]+`, at most `max` characters. */
function checkIamName(rule: string, source: string, what: string, max: number) {
  return (r: GraphResource): Finding[] => {
    const name = physicalName(r);
    if (!name) return [];
    const out: Finding[] = [];
    if (name.name.length > max) out.push(finding(rule, subjectOf(r), `${what} ${described(name)} is ${name.name.length} characters; at most ${max}`, source));
    if (!/^[\w+=,.@-]+$/.test(name.name)) out.push(finding(rule, subjectOf(r), `${what} ${described(name)}: IAM names are letters, digits and +=,.@_-`, source));
    return out;
  };
}

/** CreateRole: Description at most 1000 characters of printable Latin-1. */
function checkIamDescription(r: GraphResource): Finding[] {
  const text = r.inputs.description;
  if (typeof text !== 'string') return [];
  if (text.length <= 1000 && /^[\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF]*$/.test(text)) return [];
  return [finding('aws-iam-role-name', subjectOf(r), `description: at most 1000 printable Latin-1 characters`, SOURCES.iamRole)];
}

/** "Role policy size cannot exceed 10,240 characters" (all inline policies of a role, whitespace not counted); valid JSON. */
export const ROLE_POLICY_LIMIT = 10240;

function checkPolicyDocument(input: string, limit: number, rule: string, source: string) {
  return (r: GraphResource): Finding[] => {
    const doc = r.inputs[input];
    if (typeof doc !== 'string') return [];
    try {
      JSON.parse(doc);
    } catch {
      return [finding(rule, subjectOf(r), `${input} is not JSON`, source)];
    }
    const size = doc.replace(/\s/g, '').length;
    return size <= limit ? [] : [finding(rule, subjectOf(r), `${input} is ${size} characters without whitespace; at most ${limit}`, source)];
  };
}

/**
 * SSM parameter names: letters, digits, `_.-` and `/` for hierarchies, fully qualified
 * (beginning with /) in a hierarchy, at most 15 levels, not beginning with aws or ssm
 * (any case), at most 1011 characters; a standard-tier value at most 4 KB.
 */
function checkSsmParameter(r: GraphResource): Finding[] {
  const name = r.inputs.name;
  const out: Finding[] = [];
  if (typeof name === 'string') {
    const levels = name.split('/').filter(Boolean);
    if (!/^[a-zA-Z0-9_.\-/]+$/.test(name)) out.push(finding('aws-ssm-parameter-name', subjectOf(r), `name ${JSON.stringify(name)}: only a-zA-Z0-9_.- and / are allowed`, SOURCES.ssmParameterNames));
    if (name.includes('/') && !name.startsWith('/')) out.push(finding('aws-ssm-parameter-name', subjectOf(r), `name ${JSON.stringify(name)}: a name in a hierarchy begins with /`, SOURCES.ssmParameterNames));
    if (/^(aws|ssm)/i.test(levels[0] ?? '')) out.push(finding('aws-ssm-parameter-name', subjectOf(r), `name ${JSON.stringify(name)}: may not begin with aws or ssm`, SOURCES.ssmParameterNames));
    if (levels.length > 15) out.push(finding('aws-ssm-parameter-name', subjectOf(r), `name ${JSON.stringify(name)} has ${levels.length} levels; at most 15`, SOURCES.ssmParameterNames));
    if (name.length > 1011) out.push(finding('aws-ssm-parameter-name', subjectOf(r), `name is ${name.length} characters; at most 1011`, SOURCES.ssmParameter));
  }
  const value = r.inputs.value;
  const tier = typeof r.inputs.tier === 'string' ? r.inputs.tier : 'Standard';
  if (typeof value === 'string' && tier === 'Standard' && Buffer.byteLength(value) > 4096) {
    out.push(finding('aws-ssm-parameter-value', subjectOf(r), `a Standard parameter's value is at most 4096 bytes, got ${Buffer.byteLength(value)}`, SOURCES.ssmParameter));
  }
  return out;
}

/**
 * S3 bucket names (general purpose): 3-63 characters of lowercase letters, digits,
 * dots and hyphens, a letter or digit first and last, no `..`, not an IP address,
 * not beginning with xn-- or sthree-, not ending in -s3alias or --ol-s3. The autonamed
 * name is the logical name plus Pulumi's suffix.
 */
function checkBucketName(r: GraphResource): Finding[] {
  const name = physicalName(r, 'bucket');
  if (!name) return [];
  const n = name.name;
  const problems = [
    n.length < 3 || n.length > 63 ? `is ${n.length} characters; 3 to 63` : '',
    /^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(n) ? '' : 'has characters other than a-z 0-9 . - or does not begin and end with a letter or digit',
    n.includes('..') ? 'has two adjacent dots' : '',
    /^\d+\.\d+\.\d+\.\d+$/.test(n) ? 'looks like an IP address' : '',
    /^(xn--|sthree-)/.test(n) || /(-s3alias|--ol-s3)$/.test(n) ? 'uses a reserved prefix or suffix' : '',
  ].filter(Boolean);
  return problems.map((p) => finding('aws-s3-bucket-name', subjectOf(r), `bucket ${described(name)} ${p}`, SOURCES.s3BucketNames));
}

/** S3 object keys: at most 1024 bytes of UTF-8. */
function checkObjectKey(r: GraphResource): Finding[] {
  const key = r.inputs.key;
  if (typeof key !== 'string' || Buffer.byteLength(key) <= 1024) return [];
  return [finding('aws-s3-object-key', subjectOf(r), `key is ${Buffer.byteLength(key)} bytes; at most 1024`, SOURCES.s3ObjectKeys)];
}

/** The readiness check (infra/targets/aws/readiness.ts): an http(s) URL and positive times, the interval within the timeout. */
function checkReadiness(r: GraphResource): Finding[] {
  const i = r.inputs;
  const out: Finding[] = [];
  if (typeof i.url === 'string' && !/^https?:\/\/[^/]+\//.test(i.url)) out.push(finding('readiness-check', subjectOf(r), `url ${JSON.stringify(i.url)} is not an http(s) URL with a path`, 'infra/targets/aws/readiness.ts'));
  for (const k of ['timeoutSeconds', 'intervalSeconds', 'requestTimeoutSeconds']) {
    if (i[k] !== undefined && !(typeof i[k] === 'number' && (i[k] as number) > 0)) out.push(finding('readiness-check', subjectOf(r), `${k} must be a positive number of seconds`, 'infra/targets/aws/readiness.ts'));
  }
  if (typeof i.intervalSeconds === 'number' && typeof i.timeoutSeconds === 'number' && i.intervalSeconds > i.timeoutSeconds) {
    out.push(finding('readiness-check', subjectOf(r), 'intervalSeconds is longer than timeoutSeconds: it would look once', 'infra/targets/aws/readiness.ts'));
  }
  return out;
}

/** Docker container names (and volume names of the local driver): `[a-zA-Z0-9][a-zA-Z0-9_.-]+`. */
const DOCKER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

function checkDockerName(rule: string, source: string, what: string) {
  return (r: GraphResource): Finding[] => {
    const name = physicalName(r);
    if (!name || DOCKER_NAME.test(name.name)) return [];
    return [finding(rule, subjectOf(r), `${what} ${described(name)}: Docker accepts only [a-zA-Z0-9][a-zA-Z0-9_.-]+`, source)];
  };
}

/**
 * An image reference, by distribution/reference's grammar: an optional registry
 * (host[:port]/), lowercase path components joined by `.`, `_`, `__` or dashes, an
 * optional tag `[\w][\w.-]{0,127}` and an optional digest; the name at most 255
 * characters.
 */
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*';
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[(?:[a-fA-F0-9:]+)\\])(?::[0-9]+)?`;
const REFERENCE = new RegExp(`^((?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*)(?::([\\w][\\w.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$`);

export function imageReferenceProblem(ref: string): string | undefined {
  const m = REFERENCE.exec(ref);
  if (!m) return `${JSON.stringify(ref)} is not a Docker image reference (lowercase name components, an optional :tag and @digest)`;
  if (m[1].length > 255) return `the repository name of ${JSON.stringify(ref)} is ${m[1].length} characters; at most 255`;
  return undefined;
}

function checkImageReference(input: string) {
  return (r: GraphResource): Finding[] => {
    const ref = r.inputs[input];
    if (typeof ref !== 'string') return [];
    // A container may run an image by its ID, which the provider computes (RemoteImage.imageId): not a name anyone wrote.
    if (input === 'image' && ref.startsWith('sha256:')) return [];
    const problem = imageReferenceProblem(ref);
    return problem ? [finding('docker-image-reference', subjectOf(r), `${input}: ${problem}`, SOURCES.imageReference)] : [];
  };
}

/** random.RandomPassword: "The minimum value for length is 1 and, length must also be >= (minUpper + minLower + minNumeric + minSpecial)." */
function checkRandomPassword(r: GraphResource): Finding[] {
  const length = r.inputs.length;
  const mins = ['minUpper', 'minLower', 'minNumeric', 'minSpecial'].reduce((sum, k) => sum + (typeof r.inputs[k] === 'number' ? (r.inputs[k] as number) : 0), 0);
  if (typeof length === 'number' && length >= 1 && length >= mins) return [];
  return [finding('random-password-length', subjectOf(r), `length ${JSON.stringify(length)}: at least 1 and at least the sum of the min* counts (${mins})`, SOURCES.randomPassword)];
}

/** The provider's accepted algorithms and curves (its schema validators refuse others at plan time). */
const TLS_ALGORITHMS = ['RSA', 'ECDSA', 'ED25519'];
const TLS_CURVES = ['P224', 'P256', 'P384', 'P521'];
function checkTlsPrivateKey(r: GraphResource): Finding[] {
  const { algorithm, ecdsaCurve } = r.inputs;
  const out: Finding[] = [];
  if (!TLS_ALGORITHMS.includes(algorithm as string)) out.push(finding('tls-key-algorithm', subjectOf(r), `algorithm ${JSON.stringify(algorithm)}: one of ${TLS_ALGORITHMS.join(', ')}`, SOURCES.tlsPrivateKey));
  if (ecdsaCurve !== undefined && !TLS_CURVES.includes(ecdsaCurve as string)) out.push(finding('tls-key-curve', subjectOf(r), `ecdsaCurve ${JSON.stringify(ecdsaCurve)}: one of ${TLS_CURVES.join(', ')}`, SOURCES.tlsPrivateKey));
  return out;
}

/** Key usages the provider accepts (RFC 5280 key usages and extended key usages, by its names). */
const TLS_USES = ['anyExtended', 'certSigning', 'clientAuth', 'codeSigning', 'contentCommitment', 'crlSigning', 'dataEncipherment', 'decipherOnly', 'digitalSignature', 'emailProtection', 'encipherOnly', 'ipsecEndSystem', 'ipsecTunnel', 'ipsecUser', 'keyAgreement', 'keyEncipherment', 'microsoftCommercialCodeSigning', 'microsoftKernelCodeSigning', 'microsoftServerGatedCrypto', 'netscapeServerGatedCrypto', 'ocspSigning', 'serverAuth', 'timestamping'];
function checkTlsCert(r: GraphResource): Finding[] {
  const { allowedUses, validityPeriodHours } = r.inputs;
  const out: Finding[] = [];
  const unknown = Array.isArray(allowedUses) ? allowedUses.filter((u) => !TLS_USES.includes(u as string)) : ['(allowedUses is required)'];
  if (unknown.length > 0) out.push(finding('tls-cert-uses', subjectOf(r), `allowedUses ${JSON.stringify(unknown)}: not among the provider's values`, SOURCES.tlsCert));
  if (typeof validityPeriodHours !== 'number' || !Number.isInteger(validityPeriodHours) || validityPeriodHours < 1) out.push(finding('tls-cert-validity', subjectOf(r), `validityPeriodHours ${JSON.stringify(validityPeriodHours)}: a whole number of hours, at least 1`, SOURCES.tlsCert));
  return out;
}

/** A component's type: `package:module:name`. */
function checkTypeToken(r: GraphResource): Finding[] {
  if (/^[^:]+:[^:]+:[^:]+$/.test(r.type)) return [];
  return [finding('type-token', subjectOf(r), `type ${JSON.stringify(r.type)} is not of the form package:module:name`, SOURCES.typeToken)];
}

type Check = (r: GraphResource) => Finding[];
const all =
  (...checks: Check[]): Check =>
  (r) =>
    checks.flatMap((c) => c(r));
/** A type whose resources carry nothing with a documented limit (no physical name, no tags, no sized input the program sets). */
const nothing: Check = () => [];

/**
 * Every resource type the program registers, with its checks. A type missing here is
 * itself a finding, so a new resource type gets a rule (or an explicit `nothing`,
 * with the reason beside it) before it ships.
 */
export const RULES_BY_TYPE: Record<string, Check> = {
  // aws: only security groups have a `name` the provider autonames; the rest carry a Name tag.
  'aws:ec2/securityGroup:SecurityGroup': all(checkSecurityGroup, checkTags),
  'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule': all(checkSecurityGroupRule, checkTags),
  'aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule': all(checkSecurityGroupRule, checkTags),
  'aws:ec2/instance:Instance': all(checkInstance, checkTags),
  'aws:ec2/vpc:Vpc': all(checkCidrSize(SOURCES.vpc, 'aws-vpc-cidr'), checkTags),
  'aws:ec2/subnet:Subnet': all(checkCidrSize(SOURCES.subnet, 'aws-subnet-cidr'), checkTags),
  'aws:ebs/volume:Volume': all(checkEbsVolume, checkTags),
  'aws:ec2/eip:Eip': checkTags,
  'aws:ec2/internetGateway:InternetGateway': checkTags,
  'aws:ec2/natGateway:NatGateway': checkTags,
  'aws:ec2/routeTable:RouteTable': checkTags,
  'aws:ec2/networkInterface:NetworkInterface': checkTags,
  'aws:ec2/vpcPeeringConnection:VpcPeeringConnection': checkTags,
  'aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter': checkTags,
  // Associations and routes: references to other resources and CIDRs the VPC already checks.
  'aws:ec2/route:Route': nothing,
  'aws:ec2/routeTableAssociation:RouteTableAssociation': nothing,
  'aws:ec2/eipAssociation:EipAssociation': nothing,
  'aws:ec2/volumeAttachment:VolumeAttachment': nothing,
  // Secrets in SSM, the instances' roles (IAM is global: names are per account).
  'aws:ssm/parameter:Parameter': all(checkSsmParameter, checkTags),
  'aws:iam/role:Role': all(checkIamName('aws-iam-role-name', SOURCES.iamRole, 'role', 64), checkIamDescription, checkTags),
  'aws:iam/instanceProfile:InstanceProfile': all(checkIamName('aws-iam-instance-profile-name', SOURCES.iamInstanceProfile, 'instance profile', 128), checkTags),
  'aws:iam/rolePolicy:RolePolicy': all(checkIamName('aws-iam-role-policy', SOURCES.iamRolePolicy, 'inline policy', 128), checkPolicyDocument('policy', ROLE_POLICY_LIMIT, 'aws-iam-role-policy', SOURCES.iamQuotas)),
  // A managed policy's ARN and a role name the role already checks.
  'aws:iam/rolePolicyAttachment:RolePolicyAttachment': nothing,
  // The artefact bucket and its configuration.
  'aws:s3/bucket:Bucket': all(checkBucketName, checkTags),
  'aws:s3/bucketPolicy:BucketPolicy': checkPolicyDocument('policy', 20 * 1024, 'aws-s3-bucket-policy', SOURCES.s3BucketPolicy),
  'aws:s3/bucketObjectv2:BucketObjectv2': all(checkObjectKey, checkTags),
  // Settings of a bucket the bucket rule checks, from fixed enumerations.
  'aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock': nothing,
  'aws:s3/bucketOwnershipControls:BucketOwnershipControls': nothing,
  'aws:s3/bucketVersioning:BucketVersioning': nothing,
  'aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration': nothing,
  // The readiness check, a dynamic resource: nothing a cloud names; its own inputs.
  'pulumi-nodejs:dynamic/cdn:ReadinessCheck': checkReadiness,
  // docker
  'docker:index/container:Container': all(checkDockerName('docker-container-name', SOURCES.dockerNames, 'container'), checkImageReference('image')),
  'docker:index/volume:Volume': checkDockerName('docker-volume-name', SOURCES.dockerVolumeNames, 'volume'),
  // Moby documents no pattern for network names; the container one is applied, which every Docker accepts.
  'docker:index/network:Network': checkDockerName('docker-network-name', SOURCES.dockerNames, 'network'),
  'docker:index/remoteImage:RemoteImage': checkImageReference('name'),
  'docker:index/image:Image': checkImageReference('imageName'),
  // random
  'random:index/randomPassword:RandomPassword': checkRandomPassword,
  // tls (the Redis links that cross regions: redis-tls.ts); nothing they make is named in a cloud
  'tls:index/privateKey:PrivateKey': checkTlsPrivateKey,
  'tls:index/selfSignedCert:SelfSignedCert': checkTlsCert,
  'tls:index/locallySignedCert:LocallySignedCert': checkTlsCert,
  'tls:index/certRequest:CertRequest': nothing,
};

/** The project's own components (infra/targets/pulumi/component.ts): type token only. */
const COMPONENT_TYPE = /^cdn:service:/;
/**
 * The stack resource and providers (the aws target's one per region, and the default
 * providers the engine adds, which a policy pack sees): nothing a cloud names, and
 * their only inputs are provider settings (a region from the validated spec).
 */
const ENGINE_TYPE = /^pulumi:(pulumi:Stack$|providers:)/;

function checksFor(type: string): Check | undefined {
  if (RULES_BY_TYPE[type]) return RULES_BY_TYPE[type];
  if (COMPONENT_TYPE.test(type)) return checkTypeToken;
  return ENGINE_TYPE.test(type) ? nothing : undefined;
}

/** Names, limits and known types: every resource against the rules of its type. */
export function checkResources(resources: readonly GraphResource[]): Finding[] {
  const out: Finding[] = [];
  for (const r of resources) {
    const checks = checksFor(r.type);
    if (!checks) {
      out.push(finding('resource-type-known', subjectOf(r), `no pre-flight rule knows ${r.type}: add its name patterns and limits to RULES_BY_TYPE in infra/targets/pulumi/preflight.ts (or mark it as having none, saying why)`, 'docs/preflight.md'));
      continue;
    }
    out.push(...checks(r));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Rules over the whole graph
// ---------------------------------------------------------------------------

/** Two resources with one URN (same type, name and parent type chain) fail the deployment: "Duplicate resource URN". */
export function checkUniqueUrns(resources: readonly GraphResource[]): Finding[] {
  const seen = new Map<string, GraphResource>();
  const out: Finding[] = [];
  for (const r of resources) {
    const urn = r.urn || `${r.parent ?? ''}::${r.type}::${r.name}`;
    if (seen.has(urn)) out.push(finding('urn-unique', subjectOf(r), `Duplicate resource URN '${urn}'; give one of them another name`, SOURCES.urn));
    else seen.set(urn, r);
  }
  return out;
}

const SG_RULE_TYPES = ['aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule', 'aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule'];

/** An IPv4 CIDR as AWS keeps it: the network address (AWS canonicalizes 100.68.0.18/18 to 100.68.0.0/18). */
function canonicalCidr(cidr: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  if (!m) return cidr.toLowerCase();
  const bits = Number(m[5]);
  const ip = m.slice(1, 5).reduce((acc, o) => acc * 256 + Number(o), 0);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  const net = (ip & mask) >>> 0;
  return `${[24, 16, 8, 0].map((s) => (net >>> s) & 255).join('.')}/${bits}`;
}

/** What makes a security-group rule: its group, direction, protocol, ports and source (or destination). */
export function securityGroupRuleKey(r: GraphResource): string {
  const i = r.inputs;
  const protocol = String(i.ipProtocol ?? '').toLowerCase();
  const proto = { tcp: '6', udp: '17', icmp: '1' }[protocol] ?? protocol;
  // -1 (all protocols) covers every port, whatever the range says (IpPermission).
  const ports = proto === '-1' ? '*' : `${String(i.fromPort)}-${String(i.toPort)}`;
  const peer =
    typeof i.cidrIpv4 === 'string'
      ? `cidr4 ${canonicalCidr(i.cidrIpv4)}`
      : typeof i.cidrIpv6 === 'string'
        ? `cidr6 ${i.cidrIpv6.toLowerCase()}`
        : typeof i.referencedSecurityGroupId === 'string'
          ? `group ${i.referencedSecurityGroupId}`
          : typeof i.prefixListId === 'string'
            ? `prefix-list ${i.prefixListId}`
            : 'none';
  const direction = r.type.includes('Ingress') ? 'ingress' : 'egress';
  return `${String(i.securityGroupId)} ${direction} ${proto} ${ports} ${peer}`;
}

/** AWS refuses a second rule with the same group, protocol, ports and source: every rule must be unique. */
export function checkUniqueSecurityGroupRules(resources: readonly GraphResource[]): Finding[] {
  const seen = new Map<string, GraphResource>();
  const out: Finding[] = [];
  for (const r of resources.filter((x) => SG_RULE_TYPES.includes(x.type))) {
    const key = securityGroupRuleKey(r);
    const first = seen.get(key);
    if (first) {
      out.push(finding('aws-security-group-rule-unique', subjectOf(r), `${r.name} repeats ${first.name} (${key}); AWS refuses a duplicate rule`, SOURCES.ipRange));
    } else {
      seen.set(key, r);
    }
  }
  return out;
}

/** Resources registered inside an apply callback: `pulumi preview` does not show them while the value is unknown. */
export function checkNoResourcesInApply(resources: readonly GraphResource[]): Finding[] {
  return resources
    .filter((r) => r.registeredInApply)
    .map((r) =>
      finding(
        'no-resource-in-apply',
        subjectOf(r),
        `${r.name} is ${r.registeredInApply}: resources created inside apply do not appear in pulumi preview unless the value is known; pass the Output as an input instead`,
        SOURCES.apply,
      ),
    );
}

/** A stack output as the run left it. */
export interface OutputValue {
  known: boolean;
  value: unknown;
}

function undefinedPaths(v: unknown, at: string): string[] {
  if (v === undefined) return [at];
  if (Array.isArray(v)) return v.flatMap((x, i) => undefinedPaths(x, `${at}[${i}]`));
  if (isObject(v)) return Object.entries(v).flatMap(([k, x]) => undefinedPaths(x, `${at}.${k}`));
  return [];
}

/**
 * Every stack output resolves to a value: not unknown after a run that knows every
 * input, nothing undefined inside (the runtime treats undefined properties as absent,
 * so `pulumi stack output` would silently lack them).
 */
export function checkOutputs(outputs: Record<string, OutputValue>, expected: readonly string[] = []): Finding[] {
  const out: Finding[] = [];
  for (const key of expected) {
    if (!(key in outputs)) out.push(finding('stack-outputs', key, `the stack exports no ${key}`, SOURCES.outputs));
  }
  for (const [key, o] of Object.entries(outputs)) {
    if (!o.known) {
      out.push(finding('stack-outputs', key, `${key} is unknown after a run in which every input was known`, SOURCES.outputs));
      continue;
    }
    for (const p of undefinedPaths(o.value, key)) out.push(finding('stack-outputs', key, `${p} is undefined`, SOURCES.outputs));
  }
  return out;
}

/** What shoppers may reach from the internet: the balancer's HTTP and HTTPS ports. */
export const PUBLIC_PORTS = [80, 443];
/** Units people reach from outside a docker stack: the balancer (shoppers), Grafana (operators). */
export const PUBLISHED_UNITS = ['balancer', 'grafana'];

/**
 * Nothing internal (Redis, the object store, the origin's API and delivery ports,
 * metrics, health) is reachable from the internet: on aws no ingress rule opens any
 * other port to 0.0.0.0/0 or ::/0; on docker only the balancer and Grafana publish a
 * port, each on an explicit host address (Docker's default is every interface).
 */
export function checkInternalNotPublic(resources: readonly GraphResource[]): Finding[] {
  const out: Finding[] = [];
  for (const r of resources.filter((x) => x.type === 'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule')) {
    const i = r.inputs;
    const world = i.cidrIpv4 === '0.0.0.0/0' || i.cidrIpv6 === '::/0';
    const ports = Array.from({ length: Number(i.toPort) - Number(i.fromPort) + 1 }, (_, k) => Number(i.fromPort) + k);
    if (world && (i.ipProtocol === '-1' || ports.some((p) => !PUBLIC_PORTS.includes(p)))) {
      out.push(finding('internal-not-public', subjectOf(r), `opens ${i.ipProtocol === '-1' ? 'every port' : `port ${i.fromPort}-${i.toPort}`} to the internet; only ${PUBLIC_PORTS.join(' and ')} (the balancer) may be`, SOURCES.internal));
    }
  }
  for (const r of resources.filter((x) => x.type === 'docker:index/container:Container')) {
    const ports = (r.inputs.ports ?? []) as { internal: number; external?: number; ip?: string }[];
    if (ports.length === 0) continue;
    if (!PUBLISHED_UNITS.includes(r.name)) {
      out.push(finding('internal-not-public', subjectOf(r), `publishes ${ports.map((p) => p.internal).join(', ')}; only ${PUBLISHED_UNITS.join(' and ')} may publish a port`, SOURCES.internal));
    }
    for (const p of ports.filter((x) => !x.ip)) {
      out.push(finding('internal-not-public', subjectOf(r), `publishes ${p.internal} on every interface of the host; name the address (cdn:docker.bindAddress)`, SOURCES.dockerPublish));
    }
  }
  return out;
}

/** Every rule over a program's recorded resources. */
export function checkGraph(resources: readonly GraphResource[]): Finding[] {
  return [
    ...checkResources(resources),
    ...checkUniqueUrns(resources),
    ...checkUniqueSecurityGroupRules(resources),
    ...checkNoResourcesInApply(resources),
    ...checkInternalNotPublic(resources),
  ];
}

/** Findings as lines, one per finding, for a test failure or a report. */
export function formatFindings(findings: readonly Finding[]): string {
  return findings.map((f) => `[${f.rule}] ${f.subject}: ${f.message}`).join('\n');
}
