/** Tests sit beside what they test; end-to-end tests that span boxes live in test/. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/infra', '<rootDir>/origin', '<rootDir>/edge', '<rootDir>/balancer',
    '<rootDir>/observability', '<rootDir>/stacks', '<rootDir>/cli', '<rootDir>/test', '<rootDir>/examples'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  testTimeout: 60000,
};
