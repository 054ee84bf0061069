import { invalidName } from './errors.js';

/**
 * Resource names as the Pub/Sub API defines them: `projects/{project}/topics/{topic}` and
 * `projects/{project}/subscriptions/{subscription}`. The id starts with a letter, is 3-255
 * characters of letters, digits and `-_.~+%`, and does not start with `goog`.
 */
const ID = /^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$/;
const PROJECT = /^[a-z0-9][a-z0-9:.-]{0,99}$/i;

export interface ParsedName {
  project: string;
  id: string;
  name: string;
}

function parse(name: unknown, collection: 'topics' | 'subscriptions'): ParsedName {
  const text = typeof name === 'string' ? name : '';
  const parts = text.split('/');
  if (parts.length !== 4 || parts[0] !== 'projects' || parts[2] !== collection) throw invalidName(text);
  const [, project, , id] = parts as [string, string, string, string];
  if (!PROJECT.test(project) || !ID.test(id) || id.toLowerCase().startsWith('goog')) throw invalidName(text);
  return { project, id, name: text };
}

export const parseTopicName = (name: unknown) => parse(name, 'topics');
export const parseSubscriptionName = (name: unknown) => parse(name, 'subscriptions');

/** `projects/{project}` as ListTopics and ListSubscriptions take it. */
export function parseProjectName(name: unknown): string {
  const text = typeof name === 'string' ? name : '';
  const m = /^projects\/([^/]+)$/.exec(text);
  if (!m || !PROJECT.test(m[1]!)) throw invalidName(text);
  return m[1]!;
}

/** The topic a subscription points at after its topic was deleted. */
export const DELETED_TOPIC = '_deleted-topic_';
