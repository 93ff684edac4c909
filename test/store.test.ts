import { MemoryBus, MemoryStore } from 'meshkit/server'
import { describeBusContract, describeStoreContract } from './support/store-contract.js'

describeStoreContract('memory', () => new MemoryStore())
describeBusContract('memory', () => new MemoryBus())
