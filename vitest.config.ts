import { defineConfig } from 'vitest/config';

// Four tiers: unit (pure, colocated *.test.ts), int (real tools on image
// files, *.int.test.ts), build (whole image builds, *.build.test.ts) and vm
// (QEMU boots, qemu-test/**/*.vm.test.ts).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['**/*.test.ts'],
          exclude: ['**/*.int.test.ts', '**/*.build.test.ts', '**/*.vm.test.ts', 'node_modules/**', 'dist/**'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'int',
          include: ['**/*.int.test.ts'],
          exclude: ['node_modules/**', 'dist/**'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
      {
        test: {
          name: 'build',
          include: ['**/*.build.test.ts'],
          exclude: ['node_modules/**', 'dist/**'],
          testTimeout: 30 * 60_000,
          // Removing a build's work folder (hard-linked stage trees, sparse disks of
          // several GB) takes longer than vitest's default 10 s on a slow disk.
          hookTimeout: 10 * 60_000,
          fileParallelism: false,
        },
      },
      // The VM tier in two groups, one after the other: first the files that boot one
      // machine at a time, two files at once (a TCG boot keeps about one core busy, so
      // two machines on two cores finish sooner than one after the other); then the
      // cluster, alone, as it boots three or four machines at once.
      {
        test: {
          name: 'vm',
          include: ['qemu-test/**/*.vm.test.ts'],
          exclude: ['node_modules/**', 'dist/**', 'qemu-test/tests/cluster.vm.test.ts'],
          testTimeout: 45 * 60_000,
          hookTimeout: 45 * 60_000,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'vm-cluster',
          include: ['qemu-test/tests/cluster.vm.test.ts'],
          exclude: ['node_modules/**', 'dist/**'],
          testTimeout: 45 * 60_000,
          hookTimeout: 45 * 60_000,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
