/**
 * The Pulumi program: stack config -> the validated CdnSpec and target settings ->
 * the docker or aws target. Kept apart from index.ts so tests run it under
 * `pulumi.runtime.setMocks` with any config.
 */
import * as path from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { packArtefact } from '../infra/targets/aws/artefact';
import { awsStack } from '../infra/targets/aws/stack';
import { deployPlan, dockerSettingsSchema, imageCatalogue, parseAwsSettings, parseSettings } from '../infra/targets/pulumi/config';
import type { StackOutputs } from '../infra/targets/pulumi/outputs';
import { resolveSecrets } from '../infra/targets/pulumi/secrets';
import { dockerStack } from '../infra/targets/docker/stack';
import { cdnError } from '../infra/model/errors';
import { stackConfig } from './config';

/** The repository root, whether this runs from stacks/ (ts) or dist/stacks/ (js). */
function repoRoot(): string {
  const up = path.resolve(__dirname, '..');
  return path.basename(up) === 'dist' ? path.dirname(up) : up;
}

export function program(): StackOutputs {
  const config = new pulumi.Config('cdn');
  const rawSpec = config.getObject<unknown>('spec');
  const { target, spec } = stackConfig({ 'cdn:target': config.get('target'), 'cdn:spec': rawSpec });
  // aws gives the edges of its own object store read-only keys; docker keeps the root keys
  const plan = deployPlan(rawSpec, spec, target);
  const images = imageCatalogue(config.getObject<unknown>('images'));
  // Settings are checked before any resource exists, so a bad stack fails whole.
  if (target === 'docker') {
    const settings = parseSettings('cdn:docker', dockerSettingsSchema, config.getObject<unknown>('docker'));
    return dockerStack({ plan, settings, images, secrets: resolveSecrets(config, plan), repoRoot: repoRoot() });
  }
  if (config.getObject<unknown>('aws') === undefined) {
    throw cdnError('CDN_ERR_CONFIG_INVALID', 'cdn:aws is not set; at least cdn:aws.amis (the Debian 12 AMI of each region) is needed (see the README, "Deploying with Pulumi")');
  }
  const settings = parseAwsSettings(config.getObject<unknown>('aws'), spec);
  // What the instances run: this working tree's build, packed (refused when dist/ is stale).
  const artefact = packArtefact(repoRoot());
  return awsStack({ plan, settings, images, secrets: resolveSecrets(config, plan), artefact });
}
